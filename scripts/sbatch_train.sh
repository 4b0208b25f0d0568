#!/bin/bash
# Plain sbatch alternative to the Hydra submitit launcher: 2 nodes x 4 GPUs, one task per GPU.
#   sbatch scripts/sbatch_train.sh data=msd_pancreas data.root=/data/Task07_Pancreas
#SBATCH --job-name=attnunet
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=SIGUSR1@120
#SBATCH --requeue
#SBATCH --output=slurm-%j.out
set -euo pipefail
RUN_DIR=${RUN_DIR:-outputs/train/slurm-${SLURM_JOB_ID}}
# srun starts one process per GPU; Lightning reads SLURM_* to set up DDP. SIGUSR1 (120 s before the
# limit) makes attnunet save last.ckpt; the requeued job resumes from it (ckpt_path=auto).
srun attnunet-train trainer=ddp trainer.devices=4 trainer.num_nodes=2 \
    hydra.run.dir="$RUN_DIR" ckpt_path=auto "$@"
