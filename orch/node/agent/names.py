"""Container names: docker's random `adjective_surname` when --name is absent, and the rule a
given name must follow (moby daemon/names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`)."""

import random
import re

from orch.errors import InvalidArgument

VALID = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

ADJECTIVES = (
    "admiring adoring affectionate agitated amazing angry awesome beautiful blissful bold boring brave busy "
    "charming clever compassionate competent condescending confident cool cranky crazy dazzling determined "
    "distracted dreamy eager ecstatic elastic elated elegant eloquent epic exciting fervent festive flamboyant "
    "focused friendly frosty funny gallant gifted goofy gracious great happy hardcore heuristic hopeful hungry "
    "infallible inspiring intelligent interesting jolly jovial keen kind laughing loving lucid magical modest "
    "musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful pedantic pensive "
    "practical priceless quirky quizzical recursing relaxed reverent romantic sad serene sharp silly sleepy "
    "stoic strange stupefied suspicious sweet tender thirsty trusting unruffled upbeat vibrant vigilant "
    "vigorous wizardly wonderful xenodochial youthful zealous zen"
).split()

SURNAMES = (
    "agnesi albattani allen almeida archimedes ardinghelli aryabhata austin babbage banach bardeen bartik "
    "bassi bell benz bhabha bhaskara black blackburn blackwell bohr booth borg bose boyd brahmagupta brattain "
    "brown buck burnell cannon carson cartwright cerf chandrasekhar chaplygin chatelet chatterjee chebyshev "
    "cohen curie darwin davinci dewdney dhawan diffie dijkstra dirac driscoll dubinsky easley edison einstein "
    "elion engelbart euclid euler faraday feistel fermat fermi feynman franklin gagarin galileo gates gauss "
    "goldberg goldstine goldwasser golick goodall hamilton haslett hawking heisenberg hermann herschel hertz "
    "heyrovsky hodgkin hofstadter hoover hopper hugle hypatia jackson jang jennings jepsen johnson joliot "
    "jones kalam kapitsa keller kepler khorana kilby kirch knuth kowalevski lalande lamarr lamport leakey "
    "leavitt lederberg lehmann lewin lichterman liskov lovelace lumiere mahavira margulis matsumoto maxwell "
    "mayer mccarthy mcclintock mclean mcnulty meitner mendel mendeleev meninsky merkle mestorf mirzakhani "
    "morse murdock napier nash neumann newton nightingale nobel noether northcutt noyce panini pare pascal "
    "pasteur payne perlman pike poincare poitras ptolemy raman ramanujan ride ritchie robinson roentgen "
    "rosalind rubin saha sammet sanderson satoshi shamir shannon shaw shirley shockley sinoussi snyder "
    "solomon spence stonebraker sutherland swanson swartz swirles taussig tesla tharp thompson torvalds tu "
    "turing varahamihira vaughan villani visvesvaraya volhard wescoff wilbur wiles williams williamson "
    "wilson wing wozniak wright wu yalow yonath zhukovsky"
).split()


def random_name(taken, rng=random) -> str:
    """A free `adjective_surname`; after a few collisions a digit is added, as docker does."""
    for attempt in range(10):
        name = f"{rng.choice(ADJECTIVES)}_{rng.choice(SURNAMES)}"
        if name == "boring_wozniak":  # "Steve Wozniak is not boring" (moby namesgenerator)
            continue
        if attempt > 3:
            name += str(rng.randint(0, 9))
        if name not in taken:
            return name
    return f"{rng.choice(ADJECTIVES)}_{rng.choice(SURNAMES)}{rng.randint(10, 99999)}"


def check_name(name: str) -> str:
    """The name without docker's leading '/'; InvalidArgument when it breaks the rule."""
    if not VALID.match(name):
        raise InvalidArgument(f'invalid container name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least two characters')
    return name.lstrip("/")
