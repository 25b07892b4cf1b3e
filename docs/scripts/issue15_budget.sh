#!/bin/bash
# Issue 15 budget comparison on the CIFAR-10 JPEG export: 6C2F Local-Lip-B (clipped MaxMin) vs CLL vs GloRo,
# 500 train / 50 test images per class, 15 epochs, batch 128, 1 thread per job, two jobs at a time.
cd /work/main
export LIPCERT_DATA_ROOT=$PWD/data_cache
COMMON="--set data.subset_train=500 --set data.subset_test=50 --set epochs=15 --set batch_size=128 --set eval_every=15 --set threads=1 --set eval_eps=[0.1411764705882353,0.2823529411764706,0.4235294117647059]"
T="/usr/bin/time -v"
( $T .venv/bin/python -m lipcert train --params params/cifar10.yaml --experiment local_lip_b_maxmin --seed 1 \
    --out results/bench15/local_lip_b_maxmin --no-mlflow $COMMON > results/bench15/local.log 2>&1 ) &
( $T .venv/bin/python -m lipcert train --params params/cifar10.yaml --experiment cll --seed 1 --out results/bench15/cll \
    --no-mlflow $COMMON --set model=6C2F --set "optim.lr_milestones=[8,11,14]" > results/bench15/cll.log 2>&1;
  $T .venv/bin/python -m lipcert train --params params/cifar10.yaml --experiment gloro --seed 1 --out results/bench15/gloro \
    --no-mlflow $COMMON --set model=6C2F --set "optim.lr_milestones=[8,11,14]" > results/bench15/gloro.log 2>&1 ) &
wait
