#!/usr/bin/env bash
# The main job on the bundled samples (run it through `make demo`, which sets up .venv):
# step 1 (HEALPix sampling and split), step 2 (OSLO structures and DeepSphere graphs for the
# whole chain of resolution pairs a hyperprior model needs), Mollweide views of the maps,
# step 3 (a few minutes of training of a small scale hyperprior on the CPU) and step 4
# (evaluation of the test map with real bitstreams, and an original-vs-reconstruction view).
set -euo pipefail
out=${DEMO_DIR:-demo_output}
res=${DEMO_RES:-8}
patch=${DEMO_PATCH_RES:-6}
epochs=${DEMO_EPOCHS:-80}
channels=${DEMO_CHANNELS:-64 96}
lambda=${DEMO_LAMBDA:-0.01}
patches=${DEMO_PATCHES:-24}
batch=${DEMO_BATCH:-8}
eval_patch=${DEMO_EVAL_PATCH_RES:-$patch}
data=$out/healpix_res_$res
structures=$out/neighbor_structure
views=$out/views
run=$out/scale_hyperprior
start=$(date +%s)

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
if [ "$eval_patch" -lt 0 ]; then
    echo "== step 2: whole-sphere structures ($res, -1) and below, for the evaluation"
    for level in 0 1 2 3 4 5 6; do
        python generate_and_save_healpix_oslo_struct.py -o "$structures" -hr $((res - level)) \
            -pr -1
    done
fi

echo "== Mollweide views of the sampled maps"
mkdir -p "$views"
for map in "$data"/healpix_sampling_res_"$res"_*.npy; do
    name=$(basename "$map" .npy)
    python misc/create_mollweide_projection.py -i "$map" -o "$views/$name.png" -w 1200
done

# shellcheck disable=SC2086  # $channels is two numbers
common=(-m SphereScaleHyperprior -nd "$structures" -o "$run" -hr "$res" -prt "$patch"
        --channels $channels --lambda "$lambda" -bsvt 12 --dataloader-num-workers 2 --seed 0)

echo "== step 3: training a scale hyperprior (N, M = $channels) for $epochs epochs on the CPU"
python main_sphere_compression.py "${common[@]}" -i "$data/train.txt" \
    -v "$data/validation.txt" -e "$epochs" -np "$patches" -bst "$batch" \
    --checkpoint-interval "$epochs" --print-freq 0

echo "== step 4: evaluating the test map (patch resolution $eval_patch; -1: whole sphere)"
python main_sphere_compression.py "${common[@]}" -t "$data/test.txt" -prvt "$eval_patch" \
    --checkpoint-file "$run/final.pth.tar" --foldername-valtest reconstruction

echo "== original vs reconstruction"
recon=$run/reconstruction
while read -r map; do
    [ -n "$map" ] || continue
    name=$(basename "$map" .npy)
    python misc/create_mollweide_comparison.py -a "$data/$map" \
        -b "$recon/${name}_reconstructed.npy" -o "$views/${name}_comparison.png" -w 1200
done < "$data/test.txt"

echo
echo "Results (rates in $recon/rates.txt are total bits; bpp = bits / $((12 * 4 ** res)) pixels):"
awk -F, 'NR > 1 { printf "  %s: %.4f bpp (theoretical %.4f), PSNR on the sphere %.2f dB, "\
    "encoding %.1f s, decoding %.1f s\n", $1, $3, $2, $4, $5, $6 }' "$recon/test_results.csv"
echo
echo "== S-PSNR and WS-PSNR against the original ERP image"
prefix=healpix_sampling_res_${res}_
python misc/compute_spherical_psnr.py -o samples -oe jpg -po erp -t "$data/test.txt" \
    --test-files-prefix "$prefix" -r "$run" -rf reconstruction -re npy -rp "$prefix" \
    -rs _reconstructed -p healpix -ratef "$prefix" -s misc/sphere_655362.txt \
    --csv "$recon/spherical_psnr.csv"
echo
echo "The training above is a check that training runs (minutes on the CPU, on the demo's own"
echo "split), not the codec: the codec is the pretrained zoo (zoo/, experiments/train_zoo.py)."
echo "== the pretrained zoo on the held-out test map, beside JPEG and WebP"
zoo_out=$out/zoo
while read -r map; do
    [ -n "$map" ] || continue
    name=$(basename "$map" .npy)
    name=${name#"$prefix"}
    python scripts/zoo_demo.py -i "samples/$name.jpg" -r "$res" -O "$zoo_out/$name"
    python misc/create_mollweide_comparison.py -a "$zoo_out/$name/original.npy" \
        -b "$zoo_out/$name/zoo_view.npy" -o "$views/${name}_zoo_comparison.png" -w 1200
done < "$data/test.txt"
echo
echo "Outputs ($(( $(date +%s) - start )) s):"
echo "  HEALPix maps and train/validation/test lists: $data/"
echo "  neighbour structures and graphs:              $structures/"
echo "  Mollweide views of the maps:                  $views/"
echo "  original vs reconstruction:                   $views/*_comparison.png"
echo "  the zoo: results.csv, and its view:           $zoo_out/, $views/*_zoo_comparison.png"
echo "  checkpoints, log.csv, loss.txt, config.txt:   $run/"
echo "  reconstructions (.npy, gray Mollweide .png):  $recon/"
echo "  rates.txt, test_results.csv, spherical_psnr.csv: $recon/"
