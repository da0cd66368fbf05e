import pytest

from salnas.config import (
    check_sigma_px,
    config_from_dict,
    dump_config,
    load_config,
    parse_set_options,
)
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


@pytest.mark.parametrize(("data", "fragment"), [
    ({"data": {"sigma_px": float("nan")}}, r"'data\.sigma_px': .*nan.* finite number of pixels"),
    ({"data": {"sigma_px": 0}}, r"'data\.sigma_px': .*> 0"),
    ({"data": {"sigma_px": -3}}, r"'data\.sigma_px'"),
    ({"data": {"sigma_px": float("inf")}}, r"'data\.sigma_px'"),
    ({"data": {"sigma_px": 1e9}}, r"'data\.sigma_px': .*<= 1000"),
    ({"data": {"val": 0}}, r"'data\.val': 0 leaves the val split empty"),
    ({"data": {"test": 0.0}}, r"'data\.test': 0\.0 leaves the test split empty"),
    ({"data": {"val": 1.5}}, r"'data\.val'"),
    ({"supernet": {"loss": {}}}, r"'supernet\.loss': no loss term has a positive weight"),
    ({"distill": {"loss": {"kdl": 1.0}}}, r"'distill\.loss': unknown loss term\(s\) \['kdl'\]"),
    ({"supernet": {"loss": {"kld": -1.0}}}, r"'supernet\.loss': .*finite and >= 0"),
    ({"supernet": {"space": {"resolutionz": [[64, 64]]}}}, r"'supernet\.space': .*resolutionz"),
    ({"supernet": {"space": {"resolutions": []}}}, r"'supernet\.space': .*must not be empty"),
    ({"supernet": {"space": {"resolutions": [[16, 16]]}}}, r"'supernet\.space': .*total stride"),
])
def test_bad_settings_fail_at_config_time_in_one_line(data, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        config_from_dict(data, "x.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("x.yaml: invalid config: ")


def test_a_valid_space_and_good_shares_pass():
    cfg = config_from_dict({"supernet": {"space": {"resolutions": [[64, 96]]}},
                            "data": {"val": 0.1, "test": 5, "sigma_px": 24}})
    assert cfg.supernet.space == {"resolutions": [[64, 96]]} and cfg.data.sigma_px == 24.0


def test_binary_folder_and_unreadable_configs(tmp_path):
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"\x80\x02\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match=r"model\.pt is not a text file"):
        load_config(binary)
    with pytest.raises(ConfigError, match=r"is a folder, not a YAML file"):
        load_config(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_config(bad)
    assert "\n" not in str(err.value)


def test_set_options_are_typed_by_the_schema(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("supernet:\n  epochs: 2\n  loss: {kld: 1.0, cc: 1.0}\n")
    overrides = parse_set_options(["supernet.epochs=3", "supernet.loss.nss=0.5",
                                   "data.resolution=[64, 96]", "search.storage=null",
                                   "data.spec=synthetic:20", "supernet.progressive=true"])
    cfg = load_config(path, overrides)
    assert cfg.supernet.epochs == 3 and cfg.data.resolution == (64, 96)
    assert cfg.supernet.loss == {"kld": 1.0, "cc": 1.0, "nss": 0.5}  # merged into the file's
    assert cfg.search.storage is None and cfg.data.spec == "synthetic:20"
    assert cfg.supernet.progressive is True
    with pytest.raises(ConfigError, match=r"'supernet\.epochs': Input should be a valid integer"):
        load_config(path, parse_set_options(["supernet.epochs=many"]))
    with pytest.raises(ConfigError, match=r"unknown key 'data\.resolutoin'"):
        load_config(None, parse_set_options(["data.resolutoin=[64, 96]"]))
    with pytest.raises(ConfigError, match=r"--set seed\.x: 'seed' is a setting, not a section"):
        load_config(None, parse_set_options(["seed.x=1"]))
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        parse_set_options(["supernet.epochs"])
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        parse_set_options(["supernet..epochs=3"])
    with pytest.raises(ConfigError, match=r"'data\.sigma_px'"):
        load_config(None, parse_set_options(["data.sigma_px=.nan"]))


def test_check_sigma_px_names_the_option():
    assert check_sigma_px(None) is None and check_sigma_px(19) == 19.0
    for bad in (float("nan"), 0.0, -1.0, float("inf"), 1e9, "abc"):
        with pytest.raises(ConfigError, match="--sigma-px"):
            check_sigma_px(bad, "--sigma-px")  # type: ignore[arg-type]
