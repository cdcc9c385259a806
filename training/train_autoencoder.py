"""Train a plain, denoising or k-sparse autoencoder.

    accelerate launch training/train_autoencoder.py --config <recipe>.yaml --output_dir runs/autoencoder

Every flag is documented by `--help`; the loop itself is `hf_vq.training.Trainer`.
"""

from hf_vq.training import main

if __name__ == "__main__":
    main("autoencoder")
