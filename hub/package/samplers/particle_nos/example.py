"""Evolve an optimizer for a small least-squares problem with the particle GA.

Each trial trains a linear model with the trial's evolved optimizer for 60 steps; the
fitness is the negative final loss. The GA here is tiny (4 particles) so that it ends in
seconds; the paper's search uses 50 particles and a CIFAR-10 ConvNet.
"""

import optuna
import optunahub
import torch

module = optunahub.load_module(package="samplers/particle_nos")

torch.manual_seed(0)
X = torch.randn(64, 8)
Y = X @ torch.randn(8, 1) + 0.1 * torch.randn(64, 1)


def objective(trial: optuna.Trial) -> float:
    genome = module.suggest_genome(trial)
    weight = torch.zeros(8, 1, requires_grad=True)
    optimizer = module.GenomeOptimizer([weight], genome, lr=0.05, total_steps=60)
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.mean((X @ weight - Y) ** 2)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = float(torch.mean((X @ weight - Y) ** 2))
    return -final if final == final else float("-inf")  # a NaN loss ranks last


sampler = module.ParticleSampler(n_particles=4, init_factor=2, steps=1, mutations=2, seed=0)
study = optuna.create_study(
    direction="maximize", sampler=sampler, pruner=module.DivergencePruner()
)
study.optimize(objective, callbacks=[module.StopWhenFinished()])
best = study.best_trial
print(f"{len(study.trials)} trials; best fitness {best.value:.4f}: {best.user_attrs['equation']}")
