"""PGD-100 (l2, step eps/4, restarts 2, domain [0,1]) accuracy at 36/255 of a finished run's test set."""
import json, sys, torch
from lipcert.trained_run import load_trained_model
from lipcert.datasets import load_data
from lipcert.data.tensor_data import as_model_input
from lipcert.attacks import l2_pgd
torch.set_num_threads(1)
run = sys.argv[1]
cfg, model = load_trained_model(run)
data = load_data(cfg.data)
x, y = as_model_input(data.x_test), data.y_test
eps = 36 / 255
with torch.no_grad():
    correct = model(x).argmax(1) == y
_, broken = l2_pgd(model, x, y, eps, steps=100, restarts=2, step_size=eps / 4, domain=(0.0, 1.0), targets=0,
                   generator=torch.Generator().manual_seed(0))
print(json.dumps({"run": run, "clean": 100 * float(correct.float().mean()), "pgd_0.141176": 100 * float((correct & ~broken).float().mean())}))
