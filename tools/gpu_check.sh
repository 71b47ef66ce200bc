#!/usr/bin/env bash
# The GPU measurements of issue 11, as one short run for a lent GPU machine (the `device` tool):
#   1. the CUDA tests (they skip without a GPU);
#   2. open-loop wall_door H=50 on the device, every planner, 20 episodes, with the iteration-cost
#      rows (one batched GRASP iteration against the per-step loop, the MLP on CUDA);
#   3. the sync's gradient on the device, adjoint against backprop, learned model (the CPU rule
#      `sync_gradient: auto` takes backprop for its 32-D latent; on a GPU the batched Jacobians
#      may win: these rows say);
#   4. the learned-model control loop at 100 cycles per wall second: the sim at 10x real time
#      (the model's own 0.1 s step), an 8 ms solve budget, H=50, 24 chains, >= 1000 cycles,
#      through ROS (deadline misses and latency in the row).
# Results (BENCH_FORMAT JSON, reports, logs) go to $OUT (default gpu_out/). DEVICE=cpu runs the
# same on the CPU, to check the script where there is no GPU. Run from the repository root after
# `make setup`; about 5 minutes on a GPU machine.
set -u
OUT=${OUT:-gpu_out}
DEVICE=${DEVICE:-cuda}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-77} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
status=0
run() {   # run NAME COMMAND...: its output in $OUT/NAME.log, its exit status remembered
    local name=$1; shift
    echo "== $name: $*"
    "$@" > "$OUT/$name.log" 2>&1 || { echo "   failed ($?), see $OUT/$name.log"; status=1; }
    tail -n 3 "$OUT/$name.log"
}
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' | tee "$OUT/device.txt"
run cuda_tests "$PY" -m pytest -q test/test_planners.py test/test_control_cycle.py test/test_gradient_paths.py \
    -k "gpu or cuda or device"
run open_loop "$PY" -m grasp_ros.cli bench --envs wall_door --horizons 50 --quick --device "$DEVICE" \
    --no-figures --out "$OUT/open_loop"
for how in adjoint backprop; do
    run "sync_$how" "$PY" -m grasp_ros.cli bench --envs wall_door --horizons 50 --planners grasp \
        --model learned --episodes 20 --device "$DEVICE" --set grasp.sync_gradient=$how \
        --no-figures --out "$OUT/sync_$how"
done
run loop_100hz "$PY" -m grasp_ros.cli bench-loop --rate 10 --rate-factor 10 --cycles 1000 \
    -p device:="$DEVICE" -p solve_budget:=0.008 -p planner.chains:=24 --json "$OUT/loop_100hz.json" \
    --out "$OUT/loop_100hz"
exit $status
