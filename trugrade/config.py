"""Training configs: a YAML file merged over the defaults and a preset, plus overrides.

    cfg = trugrade.config.load("configs/fashion_mnist_cnn.yaml", overrides=["optim.lr=0.01"])
    cfg.optim.lr, cfg["data"]["batch_size"], cfg.to_dict(), config_hash(cfg)

Layers, lowest first: built-in defaults < preset < file < overrides. Mappings merge key by
key; lists and plain values replace. Override values are read as YAML (`0.01` a float,
`true` a bool, `[1, 2]` a list). The schema (keys, types, defaults, ranges, rules) lives in
trugrade/config_schema.py; this module reads YAML keeping the line of every key, so each
problem is reported as a ConfigError naming the file, the line, the dotted key and what is
allowed (or the override's text, for a value that came from an override). All problems of a
config are reported together, one per line.

It does not check that data.path or model.pretrained exist: that is the loader's job when
the run starts, so a config can be validated on another machine.
"""
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from .config_schema import PRESETS, RULES, SCHEMA, did_you_mean, join_path, resolve_auto
from .errors import ConfigError, TrugradeIOError

__all__ = ["Config", "ConfigError", "config_hash", "from_mapping", "load", "save_resolved"]


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float.

    NOTE: YAML 1.1 (PyYAML) reads `1e-3` as the string '1e-3' because its float pattern needs
    a dot; every learning rate written that way would then fail validation as a wrong type.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))

class _Dumper(yaml.SafeDumper):
    """SafeDumper writing sections as blocks and lists of plain values on one line."""


def _represent_list(dumper, data):
    flat = all(not isinstance(item, (list, dict)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Source:
    """Where a value came from: a file line, an override, a preset or the load() argument."""

    __slots__ = ("kind", "name", "line")

    def __init__(self, kind, name, line=None):
        self.kind, self.name, self.line = kind, name, line

    def where(self):
        if self.kind == "file":
            return f"{self.name}, line {self.line}" if self.line else self.name
        if self.kind == "override":
            return f"override '{self.name}'"
        if self.kind == "preset":
            return f"preset '{self.name}'"
        return self.name


# --------------------------------------------------------------------------- reading YAML


def _yaml_error(exc, origin, text):
    """A ConfigError from a PyYAML error, with the line (and column) where it was found."""
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
        problem = exc.problem or "invalid YAML"
        context = ""
        if exc.context and exc.context_mark is not None:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        return ConfigError(f"{origin}, line {mark.line + 1}, column {mark.column + 1}: "
                           f"YAML syntax error: {problem}{context}")
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        return ConfigError(f"{origin}, line {text.count(chr(10), 0, position) + 1}: YAML error: {exc}")
    return ConfigError(f"{origin}: YAML error: {exc}")


def _compose(text, origin):
    loader = _Loader(text)
    try:
        return loader, loader.get_single_node()
    except yaml.YAMLError as exc:
        loader.dispose()
        raise _yaml_error(exc, origin, text) from None


def _node_to_python(loader, node, path, sources, origin, kind="file"):
    """The value of a YAML node; records the line of every key and list item under `path`."""
    if isinstance(node, yaml.MappingNode):
        if node.tag != _MAP_TAG:
            raise ConfigError(f"{origin}, line {node.start_mark.line + 1}: {path or 'top level'}: "
                              f"unsupported YAML tag {node.tag}")
        first_line = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = _key(loader, key_node, path, origin)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ConfigError(f"{origin}, line {line}: {join_path(path, key)}: duplicate key '{key}' "
                                  f"(first at line {first_line[key]}); keep one")
            first_line[key] = line
        loader.flatten_mapping(node)  # `<<: *anchor` merges; explicit keys come after and win
        out = {}
        for key_node, value_node in node.value:
            key = _key(loader, key_node, path, origin)
            sub = join_path(path, key)
            sources[sub] = _Source(kind, origin, key_node.start_mark.line + 1)
            out[key] = _node_to_python(loader, value_node, sub, sources, origin, kind)
        return out
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ_TAG:
            raise ConfigError(f"{origin}, line {node.start_mark.line + 1}: {path}: unsupported YAML tag {node.tag}")
        out = []
        for i, item in enumerate(node.value):
            sub = f"{path}[{i}]"
            sources[sub] = _Source(kind, origin, item.start_mark.line + 1)
            out.append(_node_to_python(loader, item, sub, sources, origin, kind))
        return out
    return loader.construct_object(node, deep=True)


def _key(loader, key_node, path, origin):
    if not isinstance(key_node, yaml.ScalarNode):
        kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
        raise ConfigError(f"{origin}, line {key_node.start_mark.line + 1}: {path or 'top level'}: "
                          f"a key must be a plain word, not a {kind}")
    return loader.construct_object(key_node, deep=True)


def _read_yaml(text, origin):
    """(tree, sources) of a YAML document; an empty document is an empty mapping."""
    loader, node = _compose(text, origin)
    sources = {"": _Source("file", origin)}
    try:
        if node is None:
            return {}, sources
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{origin}, line {node.start_mark.line + 1}: the top level must be a mapping of "
                              f"sections (model:, data:, optim:, ...), got a "
                              f"{'list' if isinstance(node, yaml.SequenceNode) else 'single value'}")
        return _node_to_python(loader, node, "", sources, origin), sources
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, origin, text) from None
    finally:
        loader.dispose()


_OVERRIDE_SEGMENT = re.compile(r"[^\s.=\[\]]+")


def _read_override(text):
    """(tree, sources) of one `key.path=value` override."""
    if not isinstance(text, str):
        raise ConfigError(f"override {text!r}: bad override syntax: expected a string 'key.path=value', "
                          f"e.g. 'optim.lr=0.01'")
    key, equals, value_text = text.partition("=")
    key = key.strip()
    if not equals:
        raise ConfigError(f"override '{text}': bad override syntax: no '='; expected key.path=value, "
                          f"e.g. optim.lr=0.01")
    segments = key.split(".")
    if not key or not all(_OVERRIDE_SEGMENT.fullmatch(segment) for segment in segments):
        raise ConfigError(f"override '{text}': bad override syntax: '{key}' is not a dotted key such as "
                          f"optim.lr or data.split.val (a list is replaced whole: data.augment=[...])")
    if not value_text.strip():
        raise ConfigError(f"override '{text}': bad override syntax: no value after '='; "
                          f"write {key}=null for null")
    try:
        value = yaml.load(value_text, Loader=_Loader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"override '{text}': bad override syntax: the value {value_text.strip()!r} is not "
                          f"valid YAML ({problem}); quote strings that contain ':' or '#'") from None
    source = _Source("override", text)
    tree = {segments[-1]: value}
    for segment in reversed(segments[:-1]):
        tree = {segment: tree}
    sources = {}
    _mark_all(tree, "", sources, source)
    return tree, sources


def _mark_all(value, path, sources, source):
    """Records `source` for every key and list item of a value."""
    if isinstance(value, dict):
        for key, item in value.items():
            sub = join_path(path, key)
            sources[sub] = source
            _mark_all(item, sub, sources, source)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            sources[f"{path}[{i}]"] = source
            _mark_all(item, f"{path}[{i}]", sources, source)


# --------------------------------------------------------------------------- merging


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _under(key, path):
    return key == path or key.startswith(path + ".") or key.startswith(path + "[")


def _merge(base, base_sources, layer, layer_sources, path=""):
    """Merges `layer` into `base` in place: mappings key by key, everything else replaced."""
    for key, value in layer.items():
        sub = join_path(path, key)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], base_sources, value, layer_sources, sub)
            kept = base_sources.get(sub)
            # NOTE: a section keeps its file line when a preset or override adds keys to it, so a
            # problem found in the section (a missing key) points at the file.
            if sub in layer_sources and not (kept is not None and kept.kind == "file"):
                base_sources[sub] = layer_sources[sub]
        else:
            base[key] = _copy(value)
            for stale in [k for k in base_sources if _under(k, sub)]:
                del base_sources[stale]
            base_sources.update({k: s for k, s in layer_sources.items() if _under(k, sub)})


def _source_of(path, sources):
    """The source of a dotted path, or of its nearest ancestor that has one."""
    while True:
        if path in sources:
            return sources[path]
        if not path:
            return None
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""


def _raise_problems(problems, sources, origin):
    located = []
    for path, message in problems:
        source = _source_of(path, sources)
        where = source.where() if source is not None else origin
        line = source.line if source is not None and source.line else 0
        located.append((line, f"{where}: {path}: {message}"))
    located.sort(key=lambda item: item[0])
    lines = [text for _, text in located]
    if len(lines) == 1:
        raise ConfigError(lines[0])
    raise ConfigError(f"{len(lines)} problems in the config {origin}:\n" + "\n".join("  " + t for t in lines))


def _run_name(origin):
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(origin).stem).lstrip("._-")
    return name or "run"


def _resolve(file_tree, file_sources, origin, overrides, preset):
    """Merges the layers, validates, applies the rules and fills the derived values."""
    override_layers = [_read_override(text) for text in overrides]

    chosen, chosen_source = None, None
    if "preset" in file_tree:
        chosen, chosen_source = file_tree["preset"], file_sources.get("preset")
    if preset is not None:
        chosen, chosen_source = preset, _Source("argument", f"load(preset={preset!r})")
    for tree, sources in override_layers:
        if "preset" in tree:
            chosen, chosen_source = tree["preset"], sources["preset"]
    if chosen is not None and (not isinstance(chosen, str) or chosen not in PRESETS):
        raise ConfigError(f"{chosen_source.where()}: preset: not an allowed value: {chosen!r} is not one of "
                          f"{', '.join(PRESETS)}{did_you_mean(chosen, PRESETS)}")

    merged, sources = {}, {"": _Source("file", origin)}
    if chosen is not None:
        layer = PRESETS[chosen]
        layer_sources = {}
        _mark_all(layer, "", layer_sources, _Source("preset", chosen))
        _merge(merged, sources, layer, layer_sources)
    _merge(merged, sources, file_tree, file_sources)
    for tree, tree_sources in override_layers:
        _merge(merged, sources, tree, tree_sources)
    if chosen is not None:
        merged["preset"] = chosen
        sources["preset"] = chosen_source

    problems = []
    resolved = SCHEMA.validate(merged, "", problems)
    if not problems:
        for rule in RULES:
            problems.extend(rule(resolved))
    if problems:
        _raise_problems(problems, sources, origin)
    if resolved["run"]["name"] is None:
        resolved["run"]["name"] = _run_name(origin)
    resolve_auto(resolved)
    return Config(resolved)


# --------------------------------------------------------------------------- public API


def load(path, overrides=(), preset=None):
    """The validated config of a YAML file, with a preset (name) and overrides ('key.path=value').

    Raises ConfigError naming the file, line and key of every problem.
    """
    origin = os.fspath(path)
    if isinstance(overrides, str):
        overrides = (overrides,)
    try:
        raw = Path(origin).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{origin}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{origin}, line {line}: the config file is not UTF-8 text") from None
    tree, sources = _read_yaml(text, origin)
    return _resolve(tree, sources, origin, tuple(overrides), preset)


def from_mapping(data, overrides=(), preset=None, origin="<mapping>"):
    """The validated config of a Python mapping (as a YAML file would give), with a preset and overrides."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections, got {type(data).__name__}")
    tree = _thaw(data)
    sources = {"": _Source("file", origin)}
    _mark_all(tree, "", sources, _Source("file", origin))
    if isinstance(overrides, str):
        overrides = (overrides,)
    return _resolve(tree, sources, origin, tuple(overrides), preset)


def save_resolved(config, path):
    """Writes the resolved config as YAML (every key explicit) that load() reads back to an equal config."""
    data = _thaw(config)
    text = (f"# Resolved trugrade config; config_hash {config_hash(data)}\n"
            f"# Every key is explicit: load it with trugrade.config.load(path).\n"
            + yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                        width=100))
    target = os.fspath(path)
    temporary = f"{target}.tmp{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, target)
    except OSError as exc:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise TrugradeIOError(exc.errno, f"cannot save the resolved config: {exc.strerror}", target) from None


def config_hash(config):
    """SHA-256 (hex) of the canonical JSON of a config: sorted keys, no spaces, UTF-8."""
    try:
        text = json.dumps(_thaw(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config_hash: the config holds a value JSON cannot represent ({exc})") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- Config


def _freeze(value, path):
    if isinstance(value, Mapping) and not isinstance(value, Config):
        return Config(value, path)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item, f"{path}[{i}]") for i, item in enumerate(value))
    return value


def _thaw(value):
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(item) for item in value]
    return value


class Config(Mapping):
    """A read-only nested mapping with attribute access: cfg.optim.lr == cfg["optim"]["lr"].

    Sections are Configs, lists are tuples. `Config(mapping)` only wraps; load() and
    from_mapping() validate.
    """

    __slots__ = ("_data", "_path")

    def __init__(self, data=(), path=""):
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_data", {key: _freeze(value, join_path(path, key))
                                           for key, value in dict(data).items()})

    def _missing(self, key):
        where = f"config section '{self._path}'" if self._path else "the config"
        return f"{where} has no key '{key}'{did_you_mean(key, self._data)} (keys: {', '.join(map(str, self._data))})"

    def __getitem__(self, key):
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(self._missing(key)) from None

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(self._missing(name)) from None

    def __setattr__(self, name, value):
        raise AttributeError(f"Config is read-only (setting '{name}'); pass overrides to trugrade.config.load "
                             f"or edit cfg.to_dict()")

    def __delattr__(self, name):
        raise AttributeError(f"Config is read-only (deleting '{name}')")

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def __contains__(self, key):
        return key in self._data

    def __eq__(self, other):
        if isinstance(other, Mapping):
            return self.to_dict() == _thaw(other)
        return NotImplemented

    __hash__ = None

    def __dir__(self):
        return sorted(set(super().__dir__()) | {k for k in self._data if isinstance(k, str) and k.isidentifier()})

    def __reduce__(self):
        return (Config, (self.to_dict(), self._path))

    def __repr__(self):
        return f"Config({self.to_dict()!r})"

    def to_dict(self):
        """A deep, mutable copy as plain dicts and lists."""
        return _thaw(self)
