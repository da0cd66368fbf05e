import pytest

from salnas.config import config_from_dict, dump_config, load_config
from salnas.errors import ConfigError


def test_defaults_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(load_config(None)))
    assert load_config(path) == load_config(None)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key 'data\.resolutoin'"):
        config_from_dict({"data": {"resolutoin": [64, 64]}}, "x.yaml")
    with pytest.raises(ConfigError, match="unknown key 'surpernet'"):
        config_from_dict({"surpernet": {}}, "x.yaml")


def test_bad_values_and_files(tmp_path):
    with pytest.raises(ConfigError, match="multiples of 32"):
        config_from_dict({"data": {"resolution": [100, 64]}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_dotted_overrides():
    cfg = load_config(None, {"data.spec": "osie:/x", "seed": 5})
    assert cfg.data.spec == "osie:/x" and cfg.seed == 5
