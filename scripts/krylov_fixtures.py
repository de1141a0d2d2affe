#!/usr/bin/env python3
"""Write the scipy reference solutions that the Krylov solver tests compare against.

Builds small fixed systems A x = b (from formulas, or from numpy's PCG64 generator with a
fixed seed), solves them with scipy.sparse.linalg.{cg, minres, gmres, bicg, bicgstab} and
writes one JSON file per solver to tests/fixtures/krylov/. Each case stores the matrix
itself, so the Rust tests need neither numpy nor its random generator.

Run it from the repository root with a Python that has numpy and scipy:

    /work/venv-scipy/bin/python scripts/krylov_fixtures.py

The tests only read the JSON files; scipy is never needed to build or test the crate.
"""

import json
import pathlib

import numpy as np
import scipy
import scipy.sparse.linalg as sla

OUTPUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "krylov"


def tridiagonal(n, lower, diagonal, upper):
    return (
        np.diag(np.full(n - 1, lower), -1)
        + np.diag(np.full(n, diagonal))
        + np.diag(np.full(n - 1, upper), 1)
    )


def poisson(n):
    """1-D Poisson matrix tridiag(-1, 2, -1): symmetric positive definite."""
    return tridiagonal(n, -1.0, 2.0, -1.0)


def scaled_poisson(n):
    """D P D with D = diag(10^(2i/(n-1))): positive definite with a diagonal spanning 1e4."""
    d = 10.0 ** (2.0 * np.arange(n) / (n - 1))
    return d[:, None] * poisson(n) * d[None, :]


def random_spd(n, seed):
    """B^T B + I for B uniform on [-1, 1) from numpy's PCG64 with the given seed."""
    b = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, n))
    return b.T @ b + np.eye(n)


def hilbert(n):
    """Hilbert matrix 1 / (i + j + 1); condition number about 1.5e7 for n = 6."""
    i = np.arange(n)
    return 1.0 / (i[:, None] + i[None, :] + 1.0)


def log_diagonal(n, decades):
    """diag(10^(decades i / (n-1))), condition number 10^decades."""
    return np.diag(10.0 ** (decades * np.arange(n) / (n - 1)))


def indefinite(n):
    """tridiag(-1, 0, -1): symmetric, eigenvalues of both signs, nonsingular for even n."""
    return tridiagonal(n, -1.0, 0.0, -1.0)


def convection_diffusion(n, c):
    """Upwind convection-diffusion matrix tridiag(-1 - c, 2, -1 + c): nonsymmetric."""
    return tridiagonal(n, -1.0 - c, 2.0, -1.0 + c)


def random_nonsymmetric(n, seed):
    """B + 2 sqrt(n) I for B uniform on [-1, 1) from PCG64 with the given seed."""
    b = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, n))
    return b + 2.0 * np.sqrt(n) * np.eye(n)


MATRICES = {
    "poisson-30": lambda: poisson(30),
    "scaled-poisson-30": lambda: scaled_poisson(30),
    "random-spd-12": lambda: random_spd(12, 7),
    "hilbert-6": lambda: hilbert(6),
    "log-diagonal-20": lambda: log_diagonal(20, 8.0),
    "indefinite-30": lambda: indefinite(30),
    "convection-diffusion-30": lambda: convection_diffusion(30, 0.4),
    "random-nonsymmetric-12": lambda: random_nonsymmetric(12, 11),
}

# (solver, matrix, rtol, scipy maxiter, GMRES restart, warm start, Jacobi preconditioner).
# Cases with a small maxiter check agreement before convergence.
CASES = [
    ("cg", "poisson-30", 1e-8, None, None, False, False),
    ("cg", "random-spd-12", 1e-10, None, None, True, False),
    ("cg", "hilbert-6", 1e-10, None, None, False, False),
    ("cg", "log-diagonal-20", 1e-10, None, None, False, False),
    ("cg", "scaled-poisson-30", 1e-8, None, None, False, True),
    ("cg", "poisson-30", 1e-8, 5, None, False, False),
    ("minres", "poisson-30", 1e-8, None, None, False, False),
    ("minres", "indefinite-30", 1e-8, None, None, False, False),
    ("minres", "random-spd-12", 1e-10, None, None, True, False),
    ("minres", "hilbert-6", 1e-10, None, None, False, False),
    ("minres", "scaled-poisson-30", 1e-8, None, None, False, True),
    ("minres", "indefinite-30", 1e-8, 5, None, False, False),
    ("gmres", "poisson-30", 1e-8, None, 20, False, False),
    ("gmres", "convection-diffusion-30", 1e-8, None, 10, False, False),
    ("gmres", "random-nonsymmetric-12", 1e-10, None, 20, True, False),
    ("gmres", "indefinite-30", 1e-8, None, 30, False, False),
    ("gmres", "hilbert-6", 1e-10, None, 20, False, False),
    ("gmres", "scaled-poisson-30", 1e-8, None, 30, False, True),
    ("gmres", "convection-diffusion-30", 1e-8, 1, 5, False, False),
    ("bicg", "convection-diffusion-30", 1e-8, None, None, False, False),
    ("bicg", "random-nonsymmetric-12", 1e-10, None, None, True, False),
    ("bicg", "poisson-30", 1e-8, None, None, False, False),
    ("bicg", "indefinite-30", 1e-8, None, None, False, False),
    ("bicg", "scaled-poisson-30", 1e-8, None, None, False, True),
    ("bicg", "convection-diffusion-30", 1e-8, 5, None, False, False),
    ("bicgstab", "convection-diffusion-30", 1e-8, None, None, False, False),
    ("bicgstab", "random-nonsymmetric-12", 1e-10, None, None, True, False),
    ("bicgstab", "poisson-30", 1e-8, None, None, False, False),
    ("bicgstab", "hilbert-6", 1e-10, None, None, False, False),
    # At 1e-8 this case ends on the final drop of the residual near the tolerance, where the
    # iteration count depends on rounding.
    ("bicgstab", "scaled-poisson-30", 1e-6, None, None, False, True),
    ("bicgstab", "convection-diffusion-30", 1e-8, 5, None, False, False),
]

SOLVERS = {
    "cg": sla.cg,
    "minres": sla.minres,
    "gmres": sla.gmres,
    "bicg": sla.bicg,
    "bicgstab": sla.bicgstab,
}


def solution(n):
    """The known solution x*_i = sin(0.7 i + 0.3) + 0.2, also used by the Rust tests."""
    return np.sin(0.7 * np.arange(n) + 0.3) + 0.2


def run_case(solver, matrix_name, rtol, maxiter, restart, warm, jacobi):
    a = MATRICES[matrix_name]()
    n = a.shape[0]
    x_exact = solution(n)
    b = a @ x_exact
    x0 = 0.5 * np.cos(np.arange(n)) if warm else np.zeros(n)

    iterations = 0

    def count(_):
        nonlocal iterations
        iterations += 1

    kwargs = {"x0": x0.copy(), "rtol": rtol, "maxiter": maxiter, "callback": count}
    if solver != "minres":
        kwargs["atol"] = 0.0
    if solver == "gmres":
        # 'pr_norm' calls back after every inner iteration and keeps maxiter in cycles.
        kwargs["restart"] = restart
        kwargs["callback_type"] = "pr_norm"
    if jacobi:
        # scipy takes M as the inverse of the preconditioner.
        kwargs["M"] = np.diag(1.0 / np.diag(a))
    x, info = SOLVERS[solver](a, b, **kwargs)

    # Our max_iterations counts GMRES inner iterations, scipy's maxiter restart cycles.
    if maxiter is None:
        max_iterations = None
    elif solver == "gmres":
        max_iterations = maxiter * min(restart, n)
    else:
        max_iterations = maxiter

    name = f"{solver}-{matrix_name}"
    if warm:
        name += "-warm"
    if jacobi:
        name += "-jacobi"
    if maxiter:
        name += f"-maxiter-{maxiter}"

    return {
        "name": name,
        "matrix": a.tolist(),
        "b": b.tolist(),
        "x0": x0.tolist(),
        "rtol": rtol,
        "atol": 0.0,
        "maxiter": maxiter,
        "max_iterations": max_iterations,
        "restart": restart,
        "preconditioner": "jacobi" if jacobi else None,
        "x_exact": x_exact.tolist(),
        "inverse_norm": float(np.linalg.norm(np.linalg.inv(a), 2)),
        "condition_number": float(np.linalg.cond(a)),
        "scipy_x": np.asarray(x).tolist(),
        "scipy_info": int(info),
        "scipy_iterations": iterations,
        "scipy_residual_norm": float(np.linalg.norm(b - a @ x)),
    }


def main():
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for solver in SOLVERS:
        cases = [run_case(*case) for case in CASES if case[0] == solver]
        document = {
            "generator": "scripts/krylov_fixtures.py",
            "scipy_version": scipy.__version__,
            "numpy_version": np.__version__,
            "solver": solver,
            "cases": cases,
        }
        path = OUTPUT / f"{solver}.json"
        path.write_text(json.dumps(document, indent=1) + "\n")
        for case in cases:
            print(
                f"{case['name']:50} info={case['scipy_info']:4} "
                f"iterations={case['scipy_iterations']:4} "
                f"residual={case['scipy_residual_norm']:.2e}"
            )


if __name__ == "__main__":
    main()
