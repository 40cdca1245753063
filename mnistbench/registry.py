"""Registries of code chosen by name in params.yaml, each entry with the keys of its own.

    MODELS = Registry("model", "arch", "architecture", "mnistbench/models.py")

    @MODELS.register("mlp", hidden=key(tuple[int, ...], "hidden widths", min=1, min_items=1))
    class MLP(nn.Module):
        def __init__(self, hidden: tuple[int, ...]): ...

    MODELS.keys(params.model.arch, params.model.sections)   # {"hidden": (128, 64)}, validated

params.yaml names the chosen entry and holds one section per entry, under the entry's name:

    model:
      arch: mlp              # the chosen one
      mlp: {hidden: [128, 64], activation: relu, dropout: 0.0}
      cnn: {channels: [32, 64], hidden: [128, 64], activation: relu, dropout: 0.0}

so that `dvc exp run -S model.arch=cnn` switches with every value kept in params.yaml, `dvc
params diff` names each key by its owner (model.cnn.channels), and a key sits under the only entry
that reads it. An entry with no keys needs no section.

Torch-free: the rules are params.py's, so a key of an architecture gets the same one-line errors
as any key of params.yaml. The registries themselves live beside their code (models.py, optim.py),
which imports torch; stages.validate imports them only where a section changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mnistbench.params import ParamsError, check_value, show

MISSING = object()


@dataclass(frozen=True)
class Key:
    """One key of an entry's own: its type (int, float, str, bool or tuple[int, ...]), help line
    and rules, as params.py's fields. `old` is the value that reproduces what the entry did before
    the key existed: a checkpoint made then loads with it (and says so); without it, such a
    checkpoint is refused, naming the key."""

    type: object
    help: str
    rules: dict
    old: object = MISSING


def key(type, help: str, *, old=MISSING, **rules) -> Key:
    """A key's declaration: key(int, "residual blocks", min=1, max=32)."""
    allowed = {"min", "max", "min_exclusive", "max_exclusive", "choices", "min_items", "max_items"}
    if set(rules) - allowed:
        raise TypeError(f"unknown rule {sorted(set(rules) - allowed)[0]}; the rules: {', '.join(sorted(allowed))}")
    return Key(type, help, {name: rules.get(name) for name in allowed}, old)


@dataclass(frozen=True)
class Entry:
    name: str
    build: Callable
    keys: dict[str, Key]
    doc: str


class Registry:
    """Named entries of one kind, each with its keys. `section` is the params.yaml section that
    chooses (model), `choice` the key that names the entry (arch), `kind` what an entry is called in
    messages, `home` the file whose code registers them."""

    def __init__(self, section: str, choice: str, kind: str, home: str):
        self.section, self.choice, self.kind, self.home = section, choice, kind, home
        self.entries: dict[str, Entry] = {}

    def register(self, name: str, **keys: Key) -> Callable:
        """Decorator of a class or function: the entry `name`, built as build(**its keys)."""

        def add(build: Callable) -> Callable:
            self.entries[name] = Entry(name, build, keys, (build.__doc__ or "").strip().split("\n")[0])
            return build

        return add

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def names(self) -> str:
        return ", ".join(self.entries)

    def entry(self, name: str, source: str = "params.yaml") -> Entry:
        """The entry registered as `name`; ParamsError listing the registered ones if none is."""
        if name not in self.entries:
            raise ParamsError(
                f"{source}: {self.section}.{self.choice} = {name!r}: must be one of {self.names()} "
                f"(the {self.kind}s registered in {self.home})"
            )
        return self.entries[name]

    def readers(self, key_name: str) -> list[str]:
        """The entries that read a key of this name."""
        return [e.name for e in self.entries.values() if key_name in e.keys]

    def keys(self, name: str, sections: Mapping, source: str = "params.yaml") -> dict:
        """The entry's keys from its section of `sections` (absent: no keys), each checked by its
        rule and typed (lists become tuples); ParamsError, one line, naming the key otherwise."""
        entry = self.entry(name, source)
        return self.check_section(entry, sections.get(name, {}), f"{self.section}.{name}", source)

    def check_section(self, entry: Entry, tree, prefix: str, source: str, fill_old: bool = False) -> dict:
        if not isinstance(tree, dict):
            raise ParamsError(
                f"{source}: {prefix} = {show(tree)}: must be a mapping of {entry.name}'s keys"
                + (f" ({', '.join(entry.keys)})" if entry.keys else " ({}: it reads none)")
            )
        for name in tree:
            if name not in entry.keys:
                readers = self.readers(name)
                owner = f"; {', '.join(readers)} read{'s' if len(readers) == 1 else ''} it" if readers else ""
                allowed = f"its keys: {', '.join(entry.keys)}" if entry.keys else "it reads none"
                raise ParamsError(f"{source}: {prefix}.{name}: {entry.name} reads no key {name}{owner} ({allowed})")
        values = {}
        for name, declared in entry.keys.items():
            if name not in tree:
                raise ParamsError(f"{source}: missing key {prefix}.{name}: {declared.help}")
            values[name] = check_value(f"{prefix}.{name}", tree[name], declared.type, declared.rules, source)
        return values

    def check_all(
        self, chosen: str, sections: Mapping, source: str = "params.yaml", others: str = "", siblings: tuple = ()
    ) -> None:
        """Every section present, not only the chosen entry's: a typo in another is caught before a
        grid switches to it. `others` names the fields that share the parent section; `siblings`
        are the other registries whose sections it holds (train: optimizers and schedules)."""
        entry = self.entry(chosen, source)
        if entry.keys and chosen not in sections:
            raise ParamsError(
                f"{source}: missing key {self.section}.{chosen}: {chosen}'s keys ({', '.join(entry.keys)})"
            )
        for name, tree in sections.items():
            if any(name in sibling for sibling in siblings):
                continue
            if name not in self.entries:
                readers = self.readers(name) + [r for sibling in siblings for r in sibling.readers(name)]
                if readers:  # a key of an entry written at the section's level: the old flat layout
                    raise ParamsError(
                        f"{source}: {self.section}.{name}: a key of {', '.join(readers)}; it goes in "
                        f"the section of the {self.kind} that reads it: {self.section}.{readers[0]}.{name}"
                    )
                kinds = " or ".join(f"{r.kind} ({r.names()})" for r in (self, *siblings))
                raise ParamsError(
                    f"{source}: unknown key {self.section}.{name}; allowed in {self.section}: "
                    f"{others + ', ' if others else ''}and a section per registered {kinds}"
                )
            self.check_section(self.entries[name], tree, f"{self.section}.{name}", source)


def as_plain(keys: Mapping) -> dict:
    """Keys as params.yaml writes them (tuples as lists): for checkpoints and comparisons."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in keys.items()}


def described(name: str, keys: Mapping) -> str:
    """`resmlp width=256 blocks=3`: an entry and its keys, named (lists joined by -)."""
    shown = [name] + [f"{k}={'-'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in keys.items()]
    return " ".join(shown)


__all__ = ["Registry", "Entry", "Key", "key", "as_plain", "described", "MISSING"]
