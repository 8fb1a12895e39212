"""Real atomic models for training and benchmarks, taken offline from the PyPI source
archive of MDAnalysisTests (which carries PDB/mmCIF files from the wwPDB).

    structure_paths(["6msm", "3kpr"]) -> {"6msm": Path, "3kpr": Path}

The archive is downloaded once with `pip download` into the cache directory; nothing is
installed. If it cannot be had, only the built-in reference (6MSM) is available.
"""

from __future__ import annotations

import bz2
import subprocess
import sys
import tarfile
from pathlib import Path

from streamdenoise.model.guidance import cache_directory

ARCHIVE_VERSION = "2.11.0"
MEMBERS = {
    "6msm": "MDAnalysisTests/data/6msm.pdb.bz2",  # CFTR, cryo-EM, ~170 kDa
    "19hc": "MDAnalysisTests/data/19hc.pdb.gz",  # ~73 kDa (heavy atoms)
    "1a28": "MDAnalysisTests/data/1a28.pdb.gz",  # progesterone receptor dimer, ~57 kDa
    "1bd2": "MDAnalysisTests/data/mmcif/1BD2.cif.gz",  # TCR/MHC complex, ~89 kDa
    "3pwp": "MDAnalysisTests/data/mmcif/3PWP.cif.gz",  # ~94 kDa
    "3kpr": "MDAnalysisTests/data/mmcif/3KPR.cif.gz",  # ~186 kDa, elongated
}


def _archive() -> Path | None:
    folder = cache_directory() / "structures"
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob(f"mdanalysistests-{ARCHIVE_VERSION}.tar.gz"))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    command += [f"mdanalysistests=={ARCHIVE_VERSION}", "-d", str(folder), "-q"]
    if subprocess.run(command, check=False).returncode != 0:
        return None
    found = sorted(folder.glob(f"mdanalysistests-{ARCHIVE_VERSION}.tar.gz"))
    return found[0] if found else None


def structure_paths(names: list[str]) -> dict[str, Path]:
    """Paths of the requested structures (PDB/mmCIF, gzipped) that could be had."""
    folder = cache_directory() / "structures"
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    missing = []
    for name in names:
        member = MEMBERS[name]
        suffix = ".cif.gz" if member.endswith(".cif.gz") else ".pdb.gz"
        target = folder / f"{name}{suffix}"
        if target.is_file():
            paths[name] = target
        else:
            missing.append((name, member, target))
    if missing:
        archive = _archive()
        if archive is None:
            print("warning: MDAnalysisTests archive unavailable; using what is cached", flush=True)
            return paths
        with tarfile.open(archive) as tar:
            root = tar.getnames()[0].split("/")[0]
            for name, member, target in missing:
                data = tar.extractfile(f"{root}/{member}").read()
                if member.endswith(".bz2"):
                    import gzip

                    data = gzip.compress(bz2.decompress(data))
                target.write_bytes(data)
                paths[name] = target
    return paths
