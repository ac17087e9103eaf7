"""The README's first two commands: the main job on a shipped model, and the test command CI runs."""

import re

from conftest import ROOT
from onnx2snn.cli import main


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    install, test = readme_commands()[1].split(" && ")
    ci = (ROOT / ".ci" / "run").read_text()
    assert install in ci and test in ci


def test_readme_main_command_converts_the_shipped_model(tmp_path, capsys):
    command = readme_commands()[0].split(" && ")[1].split()
    assert command[0] == "onnx2snn" and (ROOT / command[1]).is_file()
    code = main([str(ROOT / command[1]), "-o", str(tmp_path / "out.snn.onnx"), "--quiet",
                 "--report-json", str(tmp_path / "r.json")] + command[2:])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "out.snn.onnx").exists()
    assert "relative L2" in out
    if "--report" in command:
        assert (tmp_path / "out.snn.report" / "report.md").is_file()
