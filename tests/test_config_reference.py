"""docs/reference/configs.md is generated from the comments in configs/ (vdiff/config_reference.py)."""

import os
import shutil

from vdiff import config_reference


def test_page_is_up_to_date():
    with open(config_reference.PAGE) as f:
        committed = f.read()
    assert committed == config_reference.generate(), (
        "docs/reference/configs.md is stale: regenerate it with python -m vdiff.config_reference"
    )


def test_every_group_is_a_section():
    page = config_reference.generate()
    configs = config_reference.CONFIGS
    groups = [g for g in os.listdir(configs) if os.path.isdir(os.path.join(configs, g)) and g != "proof"]
    assert {"data", "schedule", "model", "sampler", "task", "trainer", "callbacks", "logger"} <= set(groups)
    for group in groups:
        assert f"\n## {group}\n" in page
    assert "\n### data=mnist\n" in page and "\n### train.yaml\n" in page and "\n## proof presets\n" in page


def test_known_keys_carry_their_comments():
    page = config_reference.generate()
    flow = page.split("\n### schedule=flow\n")[1].split("\n### ")[0]
    assert "Rectified flow / conditional OT path" in flow
    assert "| `time_sampling` | `logit_normal` | uniform \\| logit_normal (Esser et al. 2024" in flow
    heun = page.split("\n### sampler=heun\n")[1].split("\n### ")[0]
    assert "| `s_churn` | `0.0` | stochastic churn; 0 = the deterministic Algorithm 1 |" in heun
    callbacks = page.split("\n### callbacks=default\n")[1].split("\n### ")[0]
    assert "| `nonfinite.action` | `stop` | stop: end the run naming the step;" in callbacks


def test_comments_are_parsed_line_by_line(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "# @package _global_\n# An option. More text.\nx: 1  # one\nquoted: 'a # b'   # not a\n"
        "nested:\n  # above\n  y: [1, 2]\nlist:\n  - p  # item\n"
    )
    doc = config_reference.parse(str(tmp_path / "a.yaml"))
    assert doc["package"] == "_global_" and config_reference.first_sentence(doc["header"]) == "An option."
    assert doc["rows"] == [
        ("x", "1", "one", "leaf"),
        ("quoted", "'a # b'", "not a", "leaf"),
        ("nested", "", "", "map"),
        ("nested.y", "[1, 2]", "above", "leaf"),
        ("list", "", "", "map"),
        ("list", "p", "item", "item"),
    ]
    assert config_reference.md("a | b <c> _self_ batch_size") == "a \\| b &lt;c> \\_self\\_ batch_size"


def test_check_fails_on_a_modified_copy(tmp_path, capsys):
    page = tmp_path / "configs.md"
    shutil.copy(config_reference.PAGE, page)
    assert config_reference.main(["--check", "--page", str(page)]) == 0
    page.write_text(page.read_text().replace("stochastic churn", "stochastic chrun"))
    assert config_reference.main(["--check", "--page", str(page)]) == 1
    assert f"{page} is stale" in capsys.readouterr().err
    assert config_reference.main(["--check", "--page", str(tmp_path / "missing.md")]) == 1
