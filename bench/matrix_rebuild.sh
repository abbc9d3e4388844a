#!/usr/bin/env bash
# Rebuild every committed leaderboard result with `medbench run`, once per executor, into DIR/<executor>/
# (store/ and out/), then compare them: bench/matrix_rebuild.py --local DIR/local --ray DIR/ray.
#
#   bash bench/matrix_rebuild.sh DIR local ray
#
# The reference zoo runs every threat, carrying attack sections over from leaderboard/results where
# medbench.reuse proves them identical (so admission, clean and corruptions are recomputed); the
# architectures study's entries have clean and corruption records only (two are not admitted).
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${1:?usage: bash bench/matrix_rebuild.sh DIR EXECUTOR...}
shift
REF=Baseline_ResNet8_ERM,Baseline_ResNet8_PGDAT,Baseline_ResNet8_TRADES,Baseline_ResNet8_SAM,Baseline_ResNet8_AUCM
REF=$REF,Baseline_SmallCNN3D_ERM,Baseline_SmallCNN3D_PGDAT,Baseline_SmallCNN3D_SAM,Baseline_SmallCNN3D_AUCM
ARCH=Baseline_ResNet18W16_ERM,Baseline_ResNet18W16_PGDAT,Baseline_SmallViT_ERM,Baseline_SmallViT_PGDAT
ARCH=$ARCH,Baseline_MobileNetV3S050_ERM,Baseline_MobileNetV3S050_PGDAT
for EX in "$@"; do
  D=$DIR/$EX
  echo "=== $EX: reference zoo (threats all, attack sections carried over where proven identical)"
  medbench run --models "$REF" --datasets breastmnist,pneumoniamnist,retinamnist,adrenalmnist3d,vesselmnist3d \
    --threats all --reuse leaderboard/results --executor "$EX" --workers 2 --store "$D/store" --out "$D/out" --quiet
  echo "=== $EX: architectures study entries (clean, corruptions; two are not admitted)"
  medbench run --models "$ARCH" --datasets breastmnist,retinamnist --threats clean,corruptions \
    --allow-unranked --executor "$EX" --workers 2 --store "$D/store" --out "$D/out" --quiet
done
