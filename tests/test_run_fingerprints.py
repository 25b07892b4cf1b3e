"""Run fingerprints are pinned (issue 13, item 1): ``RunConfig.fingerprint()`` decides whether an existing run or
checkpoint resumes and names the workflow's outputs, so a refactoring of the configs must leave it unchanged.

The hex strings below were computed at commit 01a734a (before each loss owned its config dataclass; cifar100.yaml at
a963bbf, still before) for every experiment of every params file, alone and with overrides; a config.json written by that code must still load
and give the same fingerprint.
"""

import copy
from pathlib import Path

import pytest
import yaml

from lipcert.params import run_config_from_params
from lipcert.run_config import load_run_config

PINNED = [
    ('params/two_moons.yaml', 'cll', [], 'e28ddf8d427c4b00'),
    ('params/two_moons.yaml', 'cll', ['epochs=1'], 'c271b850654ff2ce'),
    ('params/two_moons.yaml', 'gloro', [], '53b0115e26a63a3e'),
    ('params/two_moons.yaml', 'gloro', ['epochs=1'], 'cf0bbe3369c046f2'),
    ('params/two_moons.yaml', 'ce', [], 'd83c009ae8db55c7'),
    ('params/two_moons.yaml', 'ce', ['epochs=1'], '7c098b15a1c8124e'),
    ('params/cifar10.yaml', 'cll', [], '54b435e78730b81e'),
    ('params/cifar10.yaml', 'cll', ['epochs=1'], 'e0d5581c775a19a7'),
    ('params/cifar10.yaml', 'gloro', [], 'e164839bcf5f7dce'),
    ('params/cifar10.yaml', 'gloro', ['epochs=1'], '123a27fa0a0819a9'),
    ('params/cifar10.yaml', 'gloro_fixed', [], '28b354cc7b830ad3'),
    ('params/cifar10.yaml', 'gloro_fixed', ['epochs=1'], 'ee6a968fe3d0b6af'),
    ('params/cifar10.yaml', 'soc', [], '60a5922aa321059a'),
    ('params/cifar10.yaml', 'soc', ['epochs=1'], '4d32c2a51b71b834'),
    ('params/cifar10.yaml', 'cll_lipconv', [], 'e4e53b1512b48563'),
    ('params/cifar10.yaml', 'cll_lipconv', ['epochs=1'], '15aaf5d45dd5afcb'),
    ('params/cifar10.yaml', 'cpl', [], '885b899fb78e0f01'),
    ('params/cifar10.yaml', 'cpl', ['epochs=1'], '03bb926aa050e654'),
    ('params/cifar10.yaml', 'cll_cpl', [], 'e4039eb5dfcfaf35'),
    ('params/cifar10.yaml', 'cll_cpl', ['epochs=1'], '868f0b8a5f7e207f'),
    ('params/cifar10.yaml', 'sll', [], 'e8a1a9abc031dcb4'),
    ('params/cifar10.yaml', 'sll', ['epochs=1'], 'ca7c6abd9af00a61'),
    ('params/cifar10.yaml', 'cll_sll', [], '8e7ff8e5c442db7b'),
    ('params/cifar10.yaml', 'cll_sll', ['epochs=1'], '80045a42f63ad6ee'),
    ('params/cifar10.yaml', 'lbdn', [], 'fc21b54e53f7e50a'),
    ('params/cifar10.yaml', 'lbdn', ['epochs=1'], '074d7902eba30d3d'),
    ('params/cifar10.yaml', 'cll_lbdn', [], 'bf8d94656a9d8ade'),
    ('params/cifar10.yaml', 'cll_lbdn', ['epochs=1'], 'e70fd9c3ee263875'),
    ('params/tiny_imagenet.yaml', 'cll', [], '5088a61c8a58d95b'),
    ('params/tiny_imagenet.yaml', 'cll', ['epochs=1'], '19ffa541bc4d3d99'),
    ('params/tiny_imagenet.yaml', 'gloro', [], '9a915dfbe6ff26f2'),
    ('params/tiny_imagenet.yaml', 'gloro', ['epochs=1'], '69325955306447fd'),
    ('params/tiny_imagenet.yaml', 'soc', [], '648c2bcb659c501b'),
    ('params/tiny_imagenet.yaml', 'soc', ['epochs=1'], 'bb7a41db184e88de'),
    ('params/tiny_imagenet.yaml', 'cll_lipconv', [], 'c8b9aaab72a291df'),
    ('params/tiny_imagenet.yaml', 'cll_lipconv', ['epochs=1'], '3aa2e4784e3d8212'),
    ('params/tiny_imagenet.yaml', 'sll', [], 'db3b6100d4ec25bb'),
    ('params/tiny_imagenet.yaml', 'sll', ['epochs=1'], '6a0e34f56aa4785c'),
    ('params/tiny_imagenet.yaml', 'lbdn', [], 'efcc96dbe8e859ab'),
    ('params/tiny_imagenet.yaml', 'lbdn', ['epochs=1'], 'bf71585c782d222a'),
    ('params/two_moons.yaml', 'cll', ['loss.eps=0.5', 'eval_eps=[0.5]'], 'fa2671ecfffd2a43'),
    ('params/two_moons.yaml', 'cll', ['loss.p=0.005'], '1b4e545addaa9309'),
    ('params/two_moons.yaml', 'cll', ['loss.lam=1e-3'], '7f99bf19b63f5756'),
    ('params/two_moons.yaml', 'cll', ['loss.delta=0.1'], 'e3eb888098f77c7b'),
    ('params/two_moons.yaml', 'gloro', ['loss.eps=0.5'], '113ff7e53d3d9dc9'),
    ('params/two_moons.yaml', 'gloro', ['loss.output_scale=2.0'], 'd66e30abb501d385'),
    ('params/two_moons.yaml', 'ce', ['loss.lam=1e-3'], 'ca9996d1b5818b68'),
    ('params/cifar10.yaml', 'cll', ['model=6C2F'], '772327e4b6ac9773'),
    ('params/cifar10.yaml', 'cll', ['model=6C2F', 'loss.eps=0.5', 'loss.p=0.005'], 'f602a6aa132215eb'),
    ('params/cifar10.yaml', 'cll', ['loss.lam=1e-3'], '90bc071c016897c7'),
    ('params/cifar10.yaml', 'cll', ['loss.delta=0.1'], '54e967eec24656b5'),
    ('params/cifar10.yaml', 'gloro', ['model=6C2F', 'loss.eps.end=0.5'], '2f119b57a305a7bb'),
    ('params/cifar10.yaml', 'gloro_fixed', ['loss.output_scale=2.0'], 'b71ca58014037375'),
    ('params/cifar10.yaml', 'soc', ['model=LipConv-10', 'epochs=1'], '9f84a2f31ed3efb4'),
    ('params/tiny_imagenet.yaml', 'cll', ['loss.eps=1.0', 'loss.p=0.0125'], '2a2a0a1ff70d9290'),
    ('params/tiny_imagenet.yaml', 'gloro', ['loss.eps.end=0.5'], 'a9c953e237307618'),
    # params/cifar100.yaml (added at a963bbf, still with the shared loss layout): computed there
    ('params/cifar100.yaml', 'soc', [], '0e33a9ee6171cf89'),
    ('params/cifar100.yaml', 'soc', ['epochs=1'], '8408dcafa0c1eb16'),
    ('params/cifar100.yaml', 'cll_lipconv', [], 'a441771d13365095'),
    ('params/cifar100.yaml', 'cll_lipconv', ['epochs=1'], 'ee0b4dc72146a076'),
    ('params/cifar100.yaml', 'cpl', [], '77212ad6b589acbc'),
    ('params/cifar100.yaml', 'cpl', ['epochs=1'], '776a8f1edc5bb3dd'),
    ('params/cifar100.yaml', 'cll_cpl', [], '8273e2e07f9c04ce'),
    ('params/cifar100.yaml', 'cll_cpl', ['epochs=1'], '78279ce9364ec7b8'),
    ('params/cifar100.yaml', 'sll', [], '21d0c3b9536b2988'),
    ('params/cifar100.yaml', 'sll', ['epochs=1'], 'a31984c9aee230ee'),
    ('params/cifar100.yaml', 'cll_sll', [], 'df10afcc06e817ca'),
    ('params/cifar100.yaml', 'cll_sll', ['epochs=1'], 'fe49ab686517e327'),
    ('params/two_moons.yaml', 'local_lip_b', [], '3271d915ea01019e'),
    ('params/two_moons.yaml', 'local_lip_b', ['epochs=1'], 'f44a9e1ba6f77ff5'),
    ('params/two_moons.yaml', 'local_lip_g', [], 'd3e6a18bf4182c44'),
    ('params/two_moons.yaml', 'local_lip_g', ['epochs=1'], 'a51558c01d150559'),
    ('params/cifar10.yaml', 'local_lip_b', [], '7a19b55a1c6ac049'),
    ('params/cifar10.yaml', 'local_lip_b', ['epochs=1'], '2286998fb9223bca'),
    ('params/cifar10.yaml', 'local_lip_g', [], 'e3d4bf0578091545'),
    ('params/cifar10.yaml', 'local_lip_g', ['epochs=1'], '6814bfec44856f85'),
    ('params/cifar10.yaml', 'local_lip_b_maxmin', [], '59fedc7d67770865'),
    ('params/cifar10.yaml', 'local_lip_b_maxmin', ['epochs=1'], 'e2fd7f979d647a39'),
    ('params/tiny_imagenet.yaml', 'local_lip_b_maxmin', [], '034428cfc0c7d212'),
    ('params/tiny_imagenet.yaml', 'local_lip_b_maxmin', ['epochs=1'], '4a1d72f305c02fac'),
    ('params/mnist.yaml', 'local_lip_g', [], 'e8147db0405a46a7'),
    ('params/mnist.yaml', 'local_lip_g', ['epochs=1'], '9a575a68cd647970'),
    ('params/mnist.yaml', 'local_lip_b', [], '35c993faae1fcc7d'),
    ('params/mnist.yaml', 'local_lip_b', ['epochs=1'], '6a0199c2990c72db'),
]


@pytest.mark.parametrize("path,experiment,overrides,fingerprint", PINNED,
                         ids=[f"{p.split('/')[1][:-5]}:{e}{' ' if o else ''}{' '.join(o)}" for p, e, o, _ in PINNED])
def test_fingerprint_is_pinned(path, experiment, overrides, fingerprint):
    assert run_config_from_params(path, experiment, overrides).fingerprint() == fingerprint


def test_every_experiment_is_pinned():
    from lipcert.params import load_params_file

    pinned = {(p, e) for p, e, o, _ in PINNED if not o}
    for file in sorted(Path("params").glob("*.yaml")):
        path = f"params/{file.name}"
        if "experiments" not in (yaml.safe_load(file.read_text()) or {}):
            continue  # architectures.yaml, workflow.yaml
        missing = sorted(e for e in load_params_file(path)["experiments"] if (path, e) not in pinned)
        assert not missing, f"{path}: pin the fingerprints of the new experiments {missing} in PINNED"


# config.json of params/two_moons.yaml experiment cll as written at commit 01a734a (one shared loss layout)
OLD_TWO_MOONS_CLL = {
    "model": "two_moons",
    "data": {"name": "two_moons", "n_train": 2000, "n_test": 20000, "noise_radius": 0.1, "seed": 0, "root": None,
             "format": "auto", "subset_train": None, "subset_test": None, "augment": True},
    "loss": {"name": "cll", "eps": {"kind": "constant", "start": 0.15, "end": None, "power": 1.0, "until": None},
             "p": {"kind": "polynomial", "start": 0.001, "end": 1e-12, "power": 50.0, "until": None},
             "delta": None, "beta": None, "normalisation": "pairwise", "offset_mode": "one_sided", "detach_k": True,
             "lam": 1e-06, "trades_weight": None, "output_scale": 1.0, "power_iter": 5, "gamma": None, "margin": None,
             "offset": None, "temperature": None, "options": None},
    "epochs": 1000, "batch_size": 100, "seed": 0,
    "optim": {"name": "adam", "lr": 0.001, "weight_decay": 0.0, "lr_schedule": "step", "lr_milestones": [400],
              "lr_gamma": 0.1, "betas": [0.9, 0.999], "momentum": 0.9, "lr_reference_batch": None},
    "eval_eps": [0.15], "converge_tol": 1e-09, "eval_every": 50, "threads": 1, "drop_last": True, "head": "linear",
    "bound": None, "certificate": None,
}


def _old_loss(name, **values):
    """The loss section of an old config.json: every key of the shared layout, at its default unless given."""
    loss = dict(OLD_TWO_MOONS_CLL["loss"], name=name, eps=None, p=None, offset_mode="two_sided", lam=0.0)
    loss.update(values)
    return loss


def test_an_old_config_json_loads_with_its_fingerprint():
    cfg = load_run_config(copy.deepcopy(OLD_TWO_MOONS_CLL), where="old/config.json")
    assert cfg.fingerprint() == "e28ddf8d427c4b00" == run_config_from_params("params/two_moons.yaml", "cll").fingerprint()
    assert cfg.loss.name == "cll" and cfg.loss.power_iter == 5


@pytest.mark.parametrize("path,experiment,loss,fingerprint", [
    ("params/cifar10.yaml", "gloro",
     _old_loss("gloro", eps={"kind": "polynomial", "start": 0.0, "end": 0.15, "power": 5.0, "until": None}),
     "e164839bcf5f7dce"),
    ("params/cifar10.yaml", "cpl", _old_loss("margin_hinge", margin=0.7), "885b899fb78e0f01"),
    ("params/cifar10.yaml", "sll", _old_loss("aol"), "e8a1a9abc031dcb4"),
    ("params/cifar10.yaml", "soc", _old_loss("certificate_regularized", gamma=0.0), "60a5922aa321059a"),
])
def test_old_loss_sections_of_every_kind_load_with_their_fingerprint(path, experiment, loss, fingerprint):
    data = run_config_from_params(path, experiment).to_dict()
    data["loss"] = loss
    assert load_run_config(data, where="old/config.json").fingerprint() == fingerprint
