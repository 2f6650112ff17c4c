"""The ``lifexport`` command line."""

from __future__ import annotations

import re

import pytest

from lifexport.cli import main


def test_demo_prints_spike_statistics_that_respect_the_refractory_period(capsys):
    assert main(["demo", "--steps", "300", "--neurons", "60"]) == 0
    out = capsys.readouterr().out
    interval = int(re.search(r"shortest inter-spike interval (\d+) steps", out).group(1))
    assert interval >= 6  # a spike, then 5 refractory steps
    rates = [float(r) for r in re.findall(r"\]:\s+([\d.]+) Hz", out)]
    assert len(rates) == 6 and rates[0] < rates[-1], "rate must grow with the input current"


@pytest.mark.parametrize("argv", [[], ["nope"], ["demo", "--steps", "0"]])
def test_usage_errors_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
