#!/usr/bin/env bash
# The main job on the bundled samples (run it through `make demo`, which sets up .venv):
# step 1 (HEALPix sampling and split), step 2 (OSLO structures and DeepSphere graphs for the
# whole chain of resolution pairs a hyperprior model needs), and Mollweide views of the maps.
set -euo pipefail
out=${DEMO_DIR:-demo_output}
res=${DEMO_RES:-8}
patch=${DEMO_PATCH_RES:-6}
data=$out/healpix_res_$res
structures=$out/neighbor_structure
views=$out/views

echo "== step 1: sampling samples/*.jpg at HEALPix resolution $res"
python generate_healpix_samples_and_split_to_train_and_test.py -i samples -e jpg -r "$res" -s \
    -o "$data" -t 0.5 -v 0.25 --workers 2

echo "== step 2: neighbour structures and DeepSphere graphs, (hr, pr) = ($res, $patch) and below"
hr=$res
pr=$patch
while [ "$pr" -ge 0 ]; do
    python generate_and_save_healpix_oslo_struct.py -o "$structures" -hr "$hr" -pr "$pr"
    python generate_and_save_healpix_deepsphere_graph.py -o "$structures" -hr "$hr" -pr "$pr"
    hr=$((hr - 1))
    pr=$((pr - 1))
done

echo "== Mollweide views of the sampled maps"
mkdir -p "$views"
for map in "$data"/healpix_sampling_res_"$res"_*.npy; do
    name=$(basename "$map" .npy)
    python misc/create_mollweide_projection.py -i "$map" -o "$views/$name.png" -w 1200
done

echo
echo "Outputs:"
echo "  HEALPix maps and train/validation/test lists: $data/"
echo "  neighbour structures and graphs:              $structures/"
echo "  Mollweide views:                              $views/"
