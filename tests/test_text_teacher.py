"""The text teacher (issue 20): the plain-torch MPNet encoder, the context encoding, the LoRA
adapters and a training run that resumes where it stopped."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emodesk.evaluation.datasets import Row  # noqa: E402
from emodesk.lab.train.text import teacher as T  # noqa: E402
from emodesk.lab.train.text.minilm import mean_pool, tokenizer_from_file, write_safetensors  # noqa: E402
from emodesk.lab.train.text.mpnet import (  # noqa: E402
    MPNetConfig,
    MPNetEncoder,
    default_mpnet_dir,
    load_mpnet,
    relative_position_bucket,
)

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "model_type": "mpnet",
    "vocab_size": 40,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 40,
    "relative_attention_num_buckets": 32,
}


def tiny_folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    enc = MPNetEncoder(MPNetConfig.from_json(TINY))
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.2)
    d = tmp_path / "tiny-mpnet"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY), encoding="utf-8")
    write_safetensors(d / "model.safetensors", {f"mpnet.{k}": v.numpy() for k, v in enc.state_dict().items()})
    return d


def test_relative_position_buckets_follow_mpnet() -> None:
    rel = torch.tensor([0, -1, 1, -7, -8, -16, -128, -500, 8, 500])
    # keys before the query: the distance itself up to 7, then log-spaced, capped at 15; after: +16
    assert relative_position_bucket(rel).tolist() == [0, 1, 17, 7, 8, 10, 15, 15, 24, 31]


def test_the_loader_reads_hf_keys_and_padding_changes_no_real_token(tmp_path: Path) -> None:
    enc = load_mpnet(tiny_folder(tmp_path)).eval()
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 9, 2, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        both = enc(ids, mask)
        alone = enc(ids[1:, :3], mask[1:, :3])
        split = enc(ids, mask, states=enc(ids, mask, stop=1), start=1)
    assert torch.allclose(both[1, :3], alone[0], atol=1e-5)
    assert torch.allclose(both, split, atol=1e-6)


def test_a_config_of_another_architecture_is_refused(tmp_path: Path) -> None:
    from emodesk.errors import ModelError

    d = tiny_folder(tmp_path)
    (d / "config.json").write_text(json.dumps({**TINY, "model_type": "bert"}), encoding="utf-8")
    with pytest.raises(ModelError, match="model_type"):
        load_mpnet(d)


def test_the_encoder_matches_hf_transformers_on_a_tiny_random_mpnet() -> None:
    """``tests/data/mpnet_tiny``: a random 2-layer MPNet and its token states from HF transformers
    (21 tokens, so the log-spaced distance buckets are used; the second row padded)."""
    d = REPO / "tests" / "data" / "mpnet_tiny"
    ref = json.loads((d / "reference.json").read_text(encoding="utf-8"))
    enc = load_mpnet(d).eval()
    ids, mask = torch.tensor(ref["input_ids"]), torch.tensor(ref["attention_mask"])
    with torch.no_grad():
        got = enc(ids, mask).numpy()
    want = np.array(ref["last_hidden_state"])
    real = mask.numpy().astype(bool)
    assert np.abs(got[real] - want[real]).max() < 1e-5


@pytest.mark.skipif(default_mpnet_dir() is None, reason="all-mpnet-base-v2 not unpacked (teacher unpack)")
def test_the_encoder_matches_hf_transformers_on_the_real_weights() -> None:
    ref = json.loads((REPO / "tests" / "data" / "mpnet_reference.json").read_text(encoding="utf-8"))
    folder = default_mpnet_dir()
    assert folder is not None
    enc = load_mpnet(folder).eval()
    tok = tokenizer_from_file(folder / "tokenizer.json", 128)
    items = T.encode(tok, [(s, [], 0) for s in ref["sentences"]])
    ids, mask, pool = T.collate(items)
    with torch.no_grad():
        emb = mean_pool(enc(ids, mask), pool).numpy()
    assert np.abs(emb - np.array(ref["mean_pooled"])).max() < 1e-4
    pair = T.encode(tok, [(ref["sentences"][1], [ref["sentences"][0]], 0)])[0]
    assert pair.ids.tolist() == ref["pair_ids"]  # our context format is HF's pair format


def minilm_tokenizer():  # the shipped member's tokenizer: any WordPiece one shows the layout
    tok = tokenizer_from_file(REPO / "models" / "text-minilm.tokenizer.json", 10_000)
    tok.no_truncation()
    return tok


def test_context_is_the_dialogues_previous_utterances_most_recent_first() -> None:
    rows = [Row("a", 0, "d1"), Row("b", 1, "d1"), Row("x", 2, "d2"), Row("c", 3, "d1"), Row("solo", 4, "")]
    got = T.with_context(rows, 2)
    assert [g[1] for g in got] == [[], ["a"], [], ["b", "a"], []]
    assert [g[1] for g in T.with_context(rows, 0)] == [[]] * 5


def test_the_encoding_pools_the_current_utterance_and_truncates_the_oldest_context() -> None:
    tok = minilm_tokenizer()
    plain = tok.encode("i am so happy").ids
    item = T.encode(tok, [("i am so happy", [], 3)])[0]
    assert item.ids.tolist() == plain and item.current == len(plain) and item.label == 3
    long_prev = " ".join(["word"] * 40)
    item = T.encode(tok, [("i am so happy", ["what now", long_prev], 3)], max_total=20)[0]
    sep = plain[-1]
    assert item.ids.tolist()[: len(plain)] == plain and item.current == len(plain)
    assert len(item.ids) == 20 and item.ids[-1] == sep
    assert item.ids.tolist()[len(plain) : len(plain) + 4] == [sep, *tok.encode("what now").ids[1:]]
    _, mask, pool = T.collate([item, T.encode(tok, [("ok", [], 0)])[0]])
    assert pool[0].sum() == len(plain) and mask[0].sum() == 20 and mask[1].sum() == pool[1].sum()


def test_untrained_adapters_change_nothing_and_only_adapters_and_head_train(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    plain = load_mpnet(folder).eval()
    model = T.Teacher(load_mpnet(folder), rank=4, alpha=8).eval()
    ids, mask = torch.tensor([[0, 5, 6, 2]]), torch.ones(1, 4, dtype=torch.long)
    with torch.no_grad():
        assert torch.allclose(model.encoder(ids, mask), plain(ids, mask), atol=1e-6)
    names = set(model.trainable())
    assert names and all(n.startswith("head.") or n.endswith(("lora_A", "lora_B")) for n in names)
    assert sum(n.endswith("lora_A") for n in names) == 2 * len(T.TARGETS)  # every target of both layers


def synthetic_sets(n: int = 48) -> dict[str, list[T.Item]]:
    rng = np.random.default_rng(0)
    sets = {}
    for name in ("meld-train", "meld-val", "goemotions-train", "goemotions-val"):
        items = []
        for _ in range(n):
            y = int(rng.integers(7))
            length = int(rng.integers(4, 9))
            ids = np.concatenate([[0], 3 + y + 7 * rng.integers(0, 4, length - 2), [2]]).astype(np.int64)
            items.append(T.Item(ids, int(rng.integers(2, length + 1)), y))
        sets[name] = items
    return sets


def run_train(tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch, **kw: object) -> int:
    monkeypatch.setattr(T, "_data", lambda args, tok: synthetic_sets())
    no_tokenizer = type("Tok", (), {"no_truncation": lambda self: None})
    monkeypatch.setattr(T, "tokenizer_from_file", lambda *a: no_tokenizer())
    args = argparse.Namespace(
        data=tmp_path,
        encoder=folder,
        threads=1,
        best=tmp_path / "best.safetensors",
        state=tmp_path / "state.safetensors",
        log=tmp_path / "log.jsonl",
        context=2,
        epochs=2,
        batch=8,
        lr=1e-3,
        head_lr=1e-2,
        rank=4,
        alpha=8.0,
        goemotions_rows=16,
        seed=0,
        save_every=1000,
        max_minutes=0,
        max_steps=0,
        restart=False,
    )
    for k, v in kw.items():
        setattr(args, k, v)
    return T.train(args)


@pytest.mark.parametrize("stop_at", [11, 8])  # mid-epoch 2; right after epoch 1's last step
def test_a_stopped_run_resumes_onto_the_uninterrupted_runs_path(tmp_path, monkeypatch, stop_at) -> None:
    from emodesk.lab.train.text.minilm import read_safetensors

    folder = tiny_folder(tmp_path)
    once, twice = tmp_path / "once", tmp_path / "twice"
    once.mkdir(), twice.mkdir()
    assert run_train(once, folder, monkeypatch) == 0
    assert run_train(twice, folder, monkeypatch, max_steps=stop_at) == 0  # 8 steps an epoch
    log = twice / "log.jsonl"  # stopped right after epoch 1's last step: checked on resuming
    assert (len(log.read_text().splitlines()) if log.is_file() else 0) == (1 if stop_at > 8 else 0)
    assert run_train(twice, folder, monkeypatch) == 0
    logs = [[json.loads(x) for x in (d / "log.jsonl").read_text().splitlines()] for d in (once, twice)]
    assert [r["epoch"] for r in logs[1]] == [1, 2]
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in log] for log in logs]
    assert strip[0] == strip[1]
    a, b = read_safetensors(once / "state.safetensors"), read_safetensors(twice / "state.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("adam_v/") for k in a)
    for k in a:
        assert np.array_equal(a[k], b[k]), k  # the same steps, bit for bit
    moved = read_safetensors(once / "best.safetensors")
    assert any(np.abs(v).max() > 0 for k, v in moved.items() if k.endswith("lora_B"))  # it trained


def test_a_state_from_other_settings_is_refused_not_mixed(tmp_path, monkeypatch) -> None:
    from emodesk.errors import InputError

    folder = tiny_folder(tmp_path)
    assert run_train(tmp_path, folder, monkeypatch, max_steps=2) == 0
    with pytest.raises(InputError, match="--restart"):
        run_train(tmp_path, folder, monkeypatch, lr=5e-4)
    with pytest.raises(InputError, match="--restart"):  # other shapes: refused before any tensor is read
        run_train(tmp_path, folder, monkeypatch, rank=2)
    assert run_train(tmp_path, folder, monkeypatch, rank=2, restart=True, max_steps=1) == 0


def test_adam_moments_keep_their_range_through_the_state_file() -> None:
    a = np.array([1e-12, 3.3e-8, 0.5, -2.0, 7e5], dtype=np.float32)
    back = T.from_bf16_bits(T.to_bf16_bits(a))
    assert np.allclose(back, a, rtol=4e-3, atol=0) and (back[:2] > 0).all()  # float16 would give 0
