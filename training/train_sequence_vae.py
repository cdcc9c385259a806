"""Train the sequence VAE (MusicVAE: a recurrent VAE over token sequences, flat or hierarchical decoder) on melodies.

    accelerate launch training/train_sequence_vae.py --config training/configs/sequence_vae_16bar_hierarchical.yaml \
        --output_dir runs/sequence-vae

The dataset is a table of tunes (`--dataset builtin:folk-melodies`, or any dataset with a `tokens` column of MusicVAE
melody tokens and a `steps_per_bar` column), cut into windows of the model's `num_bars` bars with a hop of one bar.
Every flag is documented by `--help`; the loop is `hf_vq.training.Trainer`, with `SequenceTrainer` reading the tunes.
"""

from hf_vq.training import main
from hf_vq.utils.cli import run_script

if __name__ == "__main__":
    run_script(lambda: main("sequence_vae"))
