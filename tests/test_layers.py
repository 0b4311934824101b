"""The layers as drawn: front ends and the CLI's start load no GPU or audio-analysis code."""

import subprocess
import sys

import pytest

PROBE = "import sys, {modules}; print(sorted(m for m in ('torch', 'librosa') if m in sys.modules))"


@pytest.mark.parametrize("modules", ["bot.telegram, bot.discord, bot.web", "stembot.cli, stembot.commands"])
def test_front_ends_load_neither_torch_nor_librosa(modules):
    out = subprocess.run([sys.executable, "-c", PROBE.format(modules=modules)], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_stembot_help_imports_no_torch():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "stembot.cli", "--help"], capture_output=True,
                         text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "librosa" not in imported
    assert "separate" in out.stdout
