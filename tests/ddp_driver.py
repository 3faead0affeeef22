"""run.py under torchrun, with each process's final parameters saved for tests/test_ddp.py.

    torchrun --standalone --nproc_per_node 2 tests/ddp_driver.py OUT_DIR run.py-arguments...

Wraps train.train so that after every step each process writes its parameters to
OUT_DIR/rank<r>.pt (outside the run folder); everything else is run.py as users start it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import run  # noqa: E402
import train  # noqa: E402


def main():
    out_dir, argv = sys.argv[1], sys.argv[2:]
    original = train.train

    def keep_parameters(trainer, losses):
        params = {f"{name}.{key}": value.detach().clone() for name, module in trainer.networks.items()
                  for key, value in module.named_parameters()}
        torch.save({"iteration": trainer.iteration, "parameters": params, "losses": losses},
                   os.path.join(out_dir, f"rank{trainer.parallel.rank}.pt"))

    def train_with_capture(*args, **kwargs):
        kwargs["callback"] = keep_parameters
        return original(*args, **kwargs)

    train.train = train_with_capture
    return run.main(argv)


if __name__ == "__main__":
    sys.exit(main())
