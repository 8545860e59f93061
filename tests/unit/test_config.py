import pytest

from pipeline.config import Settings


def test_precedence_defaults_file_environment_flags(tmp_path):
    config = tmp_path / "newsevents.toml"
    config.write_text('[newsevents]\nthreshold = 0.8\nneighbours = 7\nbootstrap_servers = "file:1"\n')
    env = {"NEWSEVENTS_NEIGHBOURS": "9", "KAFKA_BOOTSTRAP_SERVERS": "env:2"}
    s = Settings.load(config, {"bootstrap_servers": "flag:3", "threshold": None}, environ=env)
    assert s.threshold == 0.8  # file (no flag given)
    assert s.neighbours == 9  # environment over file
    assert s.bootstrap_servers == "flag:3"  # flag over everything
    assert Settings.load(environ={}).neighbours == Settings().neighbours


def test_bad_values_and_unknown_keys_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="NEWSEVENTS_NEIGHBOURS"):
        Settings.load(environ={"NEWSEVENTS_NEIGHBOURS": "many"})
    bad = tmp_path / "bad.toml"
    bad.write_text("thresold = 0.8\n")
    with pytest.raises(ValueError, match="unknown settings"):
        Settings.load(bad, environ={})
    with pytest.raises(ValueError, match="does not exist"):
        Settings.load(tmp_path / "missing.toml", environ={})
