#!/usr/bin/env bash
# How recipe stages launch Python jobs.
#
# cmd_backend=local (default): jobs run on this machine. Training stages launch
#   through `python -m` with Lightning handling devices: --ngpu N > 1 on one node
#   starts N DDP processes via Lightning's own launcher (strategy=ddp).
#
# Multi-node / SLURM: do not wrap stages in a home-made launcher. Either
#   * submit the recipe stage inside an sbatch allocation with
#     `#SBATCH --nodes=K --ntasks-per-node=G --gpus-per-node=G` and run the stage
#     with `--cmd_backend slurm`: the python entry point is started with `srun`,
#     and Lightning reads SLURM_PROCID/SLURM_LOCALID/SLURM_NTASKS itself; or
#   * start one `torchrun --nnodes K --nproc_per_node G --rdzv_endpoint HOST:PORT`
#     per node with `--cmd_backend torchrun`; Lightning picks up RANK,
#     LOCAL_RANK and WORLD_SIZE from the environment.
cmd_backend="${cmd_backend:-local}"

# launch NGPU NNODES python-module args...
launch() {
  local ngpu="$1" nnodes="$2"
  shift 2
  case "${cmd_backend}" in
    local) python -m "$@" ;;
    slurm) srun --kill-on-bad-exit=1 python -m "$@" ;;
    torchrun)
      torchrun --nnodes "${nnodes}" --nproc_per_node "${ngpu}" \
        ${rdzv_endpoint:+--rdzv_backend c10d --rdzv_endpoint "${rdzv_endpoint}"} -m "$@" ;;
    *) echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local|slurm|torchrun)" >&2; return 1 ;;
  esac
}
