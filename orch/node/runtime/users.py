"""Resolve a container's user ("name|uid[:group|gid]") against its own /etc/passwd and /etc/group.

The files are the container's, read after pivot_root (runc's `user.GetExecUser` does the same),
never the host's. Docker's rules, which this follows:
- "" is root (uid 0, gid 0), with root's home from passwd when there is one.
- A name must be in passwd; a number need not be (then gid 0 and home "/").
- ":group" (a name that must be in /etc/group, or a number) sets the primary gid; without it,
  the gid comes from passwd and the supplementary groups are every group that lists the user
  by name.
- `additional_groups` (docker's --group-add: names or numbers) are added to the supplementary
  groups in any case; the primary gid is always the first supplementary group.

Pure: it takes the files' text, so tests are tables.
"""

from dataclasses import dataclass

from orch.errors import InvalidArgument


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _parse(text: str | None, fields: int) -> list[list[str]]:
    rows = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        parts += [""] * (fields - len(parts))
        rows.append(parts)
    return rows


MAX_ID = 2**31 - 1  # runc's user.maxId: ids are int32 in the kernel's interfaces


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def check_user(spec: str, where: str = "--user") -> str:
    """A user spec's numeric uid and gid within the kernel's range (runc's ErrRange), so that
    `--user 4294967296` fails at create, in one line, rather than in the container's init."""
    for part in spec.split(":"):
        if part.isdigit() and int(part) > MAX_ID:
            raise InvalidArgument(f"{where} {spec}: uids and gids must be in range 0-{MAX_ID}")
    if spec.count(":") > 1:
        raise InvalidArgument(f"{where} {spec}: use NAME|UID[:GROUP|GID]")
    return spec


def resolve_user(spec: str, additional_groups, passwd: str | None, group: str | None) -> ExecUser:
    check_user(spec, "user")
    user_arg, _, group_arg = spec.partition(":")
    users = _parse(passwd, 7)  # name:x:uid:gid:gecos:home:shell
    groups = _parse(group, 4)  # name:x:gid:member,member

    name = ""
    uid, gid, home = 0, 0, "/"
    wanted_uid = _number(user_arg) if user_arg else 0
    match = None
    for row in users:
        if (user_arg and row[0] == user_arg) or (wanted_uid is not None and _number(row[2]) == wanted_uid):
            match = row
            break
    if match is not None:
        name, uid, gid, home = match[0], int(match[2] or 0), int(match[3] or 0), match[5] or "/"
    elif wanted_uid is not None:
        uid = wanted_uid
    else:
        raise InvalidArgument(f"unable to find user {user_arg}: no matching entries in passwd file")

    supplementary: list[int] = []
    if group_arg:
        number = _number(group_arg)
        if number is not None:
            gid = number
        else:
            row = next((g for g in groups if g[0] == group_arg), None)
            if row is None:
                raise InvalidArgument(f"unable to find group {group_arg}: no matching entries in group file")
            gid = int(row[2] or 0)
    elif name:
        supplementary = [int(g[2]) for g in groups if name in g[3].split(",") and g[2].isdigit()]

    for extra in additional_groups:
        number = _number(extra)
        if number is None:
            row = next((g for g in groups if g[0] == extra), None)
            if row is None:
                raise InvalidArgument(f"unable to find group {extra}: no matching entries in group file")
            number = int(row[2] or 0)
        supplementary.append(number)

    # The primary gid leads the list, as docker's `id` shows (groups=0(root),10(wheel));
    # a gid that appears twice is listed once.
    unique = tuple(dict.fromkeys([gid, *supplementary]))
    return ExecUser(uid=uid, gid=gid, groups=unique, home=home)
