"""docker's detach keys: the key sequence that ends an attached client's session and leaves
the container running (ctrl-p ctrl-q unless `--detach-keys` says otherwise). Pure.

`parse_detach_keys("ctrl-p,ctrl-q")` is moby/term's ToBytes: a comma-separated list whose
items are one character or "ctrl-X", X one of @, a-z, [, \\, ], ^, _ (the ASCII control
codes 0-31). `Escape.feed` is what the supervisor runs the client's input through: bytes
that begin the sequence are held back; the whole sequence detaches (and is not forwarded);
a sequence broken off is forwarded as typed. Unlike moby/term's proxy, which only sees keys
that arrive one read each, the sequence is also found inside a longer read (a paste).
"""

DEFAULT = "ctrl-p,ctrl-q"
CONTROL = ["ctrl-@"] + [f"ctrl-{chr(c)}" for c in range(ord("a"), ord("z") + 1)] + ["ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_"]


class BadKeys(ValueError):
    pass


def parse_detach_keys(text: str) -> bytes:
    codes = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            codes += key.encode()
            continue
        try:
            codes.append(CONTROL.index(key.lower()))
        except ValueError:
            raise BadKeys(f"Invalid detach keys ({text}) provided") from None
    return bytes(codes)


class Escape:
    def __init__(self, keys: bytes):
        self.keys = bytes(keys)
        self.matched = 0  # how many bytes of the sequence are held back

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(what to forward, whether the sequence is complete: then the rest is dropped)."""
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            if byte == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    self.matched = 0
                    return bytes(out), True
                continue
            if self.matched:
                out += self.keys[: self.matched]
                self.matched = 0
                if byte == self.keys[0]:
                    self.matched = 1
                    if len(self.keys) == 1:
                        return bytes(out), True
                    continue
            out.append(byte)
        return bytes(out), False
