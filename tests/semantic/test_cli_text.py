"""`facecore semantic describe` and `facecore semantic to-csv`."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from facecore import arkit
from facecore.cli import app
from facecore.io import Track, parse_semanticface, read_csv, write_csv
from facecore.semantic import describe, quantize
from facecore.synth import sample_params

runner = CliRunner()


def test_describe_csv_then_to_csv_round_trip(tmp_path):
    params = sample_params(4, 3).numpy()
    src = tmp_path / "take.csv"
    write_csv(src, Track.from_params(params, fps=30))
    out = tmp_path / "analyses.jsonl"
    r = runner.invoke(app, ["semantic", "describe", str(src), "-o", str(out), "--form", "markdown"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["frame"] for rec in recs] == [0, 1, 2, 3]
    np.testing.assert_allclose([rec["time"] for rec in recs], np.arange(4) / 30, atol=1e-4)
    assert recs[0]["response"].startswith("1. **Facial Expression Category**")
    csv = tmp_path / "back.csv"
    r = runner.invoke(app, ["semantic", "to-csv", str(out), "-o", str(csv)])
    assert r.exit_code == 0, r.output
    assert "4 frames" in r.output
    track = read_csv(csv)
    want = np.stack([quantize(p) for p in params]).astype(np.float32)
    np.testing.assert_array_equal(track.params, want)
    np.testing.assert_allclose(track.times, [0, 1, 2, 3])  # the released converter's 1 fps


def test_describe_params_json_to_stdout(tmp_path):
    src = tmp_path / "p.json"
    src.write_text(json.dumps([{"JawOpen": 0.6}, list(np.zeros(61))]))
    r = runner.invoke(app, ["semantic", "describe", str(src)])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 2
    assert lines[0]["analysis"] == describe(np.eye(61)[arkit.index("JawOpen")] * 0.6)
    analysis, p = parse_semanticface(json.dumps(lines[1]), structured=True)
    assert analysis["expression_category"] == "neutral" and not p.any()


def test_errors_are_one_line(tmp_path):
    r = runner.invoke(app, ["semantic", "describe", str(tmp_path / "none.csv")])
    assert r.exit_code == 1 and "error: input not found" in r.output
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps([[0.1, 0.2]]))
    r = runner.invoke(app, ["semantic", "describe", str(bad)])
    assert r.exit_code == 1 and "list of 61 numbers, got list of length 2" in r.output
    r = runner.invoke(app, ["semantic", "describe", str(bad), "--form", "yaml"])
    assert r.exit_code == 1 and "--form must be" in r.output
    answers = tmp_path / "a.jsonl"
    answers.write_text("".join(json.dumps({"response": t}) + "\n" for t in ("no face", "still none")))
    r = runner.invoke(app, ["semantic", "to-csv", str(answers), "-o", str(tmp_path / "o.csv"), "--strict"])
    assert r.exit_code == 1 and "a.jsonl:1:" in r.output
    r = runner.invoke(app, ["semantic", "to-csv", str(answers), "-o", str(tmp_path / "o.csv")])
    assert r.exit_code == 0 and "warning: " in r.output and "0 frames" in r.output
