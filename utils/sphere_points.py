"""Nearly uniform points on the sphere for S-PSNR: the vertices of a subdivided icosahedron.

Construction (geodesic icosphere): the 12 vertices of a regular icosahedron, two of them at the
poles and the others on the rings of latitude ``+-arctan(1/2)`` (26.565 degrees) at longitudes
``0, 72, ..., 288`` (north ring) and ``36, 108, ..., 324`` (south ring), and its 20 triangles.
Each subdivision level splits every triangle into 4 at its edge midpoints, and each new midpoint
``(a + b) / |a + b|`` is projected on the unit sphere. After ``k`` levels there are
``10 * 4**k + 2`` vertices (``k = 8``: 655,362, the count of 360Lib's ``sphere_655362.txt``).
Midpoints are indexed by their unique edge (an integer key per sorted vertex pair), so the
vertices are exactly deduplicated without rounding and no Python loop runs over points.

Order: the 12 icosahedron vertices first, then the midpoints of each level in turn, so the first
``10 * 4**j + 2`` points are the level-``j`` set.

File format (360Lib): first line the count, then one ``latitude longitude`` pair in degrees per
line (latitude in ``[-90, 90]``, longitude in ``[-180, 180)``, 6 decimals).

The level-8 file is about 14 MB, too big for the repository: it is not committed. It is
regenerated (about 2 s) by ``misc/generate_sphere_points.py``, or by
``misc/compute_spherical_psnr.py`` when the ``--sphere-points`` file is missing and its name is
``sphere_<count>.txt`` with a count ``10 * 4**k + 2`` (:func:`load_or_create`).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from utils.cli import get_logger
from utils.errors import OsloError
from utils.io import write_text

DEFAULT_LEVEL = 8
"""Subdivision level of 360Lib's set: ``10 * 4**8 + 2 = 655,362`` points."""

MAX_LEVEL = 11

ICOSAHEDRON_LATITUDE = math.degrees(math.atan(0.5))
"""Latitude (degrees) of the two rings of 5 icosahedron vertices, 26.565..."""


def point_count(level: int) -> int:
    """Number of vertices ``10 * 4**level + 2`` of the icosahedron subdivided ``level`` times."""
    return 10 * 4**level + 2


def level_of_count(count: int) -> int | None:
    """The level ``k`` with ``10 * 4**k + 2 == count``, or ``None``."""
    for level in range(MAX_LEVEL + 1):
        if point_count(level) == count:
            return level
    return None


def lonlat_to_xyz(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """Unit vectors ``[n, 3]`` of latitudes and longitudes in degrees."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[12, 3]`` (unit vectors) and triangles ``[20, 3]`` of the icosahedron.

    Vertex 0 is the north pole, 1..5 the north ring (longitude ``72 i``), 6..10 the south ring
    (longitude ``36 + 72 i``), 11 the south pole.
    """
    i = np.arange(5)
    lat = np.concatenate([[90.0], np.full(5, ICOSAHEDRON_LATITUDE),
                          np.full(5, -ICOSAHEDRON_LATITUDE), [-90.0]])
    lon = np.concatenate([[0.0], 72.0 * i, 36.0 + 72.0 * i, [0.0]])
    vertices = lonlat_to_xyz(lat, lon)
    north, south, nxt = 1 + i, 6 + i, 1 + (i + 1) % 5
    south_next = 6 + (i + 1) % 5
    triangles = np.concatenate([
        np.stack([np.zeros(5, np.int64), north, nxt], axis=1),      # around the north pole
        np.stack([north, south, nxt], axis=1),                      # belt, pointing down
        np.stack([nxt, south, south_next], axis=1),                 # belt, pointing up
        np.stack([np.full(5, 11, np.int64), south_next, south], axis=1),  # south pole
    ])
    return vertices, triangles


def subdivide(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One level: each triangle ``(a, b, c)`` becomes ``(a, ab, ca)``, ``(b, bc, ab)``,
    ``(c, ca, bc)``, ``(ab, bc, ca)``; the midpoints are projected on the unit sphere and
    appended after ``vertices`` in the order of their sorted edge keys."""
    n = len(vertices)
    edges = triangles[:, [[0, 1], [1, 2], [2, 0]]]                    # [T, 3, 2]
    edges = np.sort(edges, axis=2)
    keys = edges[..., 0] * n + edges[..., 1]                          # [T, 3]
    unique, inverse = np.unique(keys.ravel(), return_inverse=True)
    mid = vertices[unique // n] + vertices[unique % n]
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)
    ab, bc, ca = (n + inverse.reshape(-1, 3)).T
    a, b, c = triangles.T
    new = np.concatenate([np.stack(t, axis=1) for t in
                          ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))])
    return np.concatenate([vertices, mid]), new


def icosphere(level: int = DEFAULT_LEVEL) -> np.ndarray:
    """Unit vectors ``[10 * 4**level + 2, 3]`` of the icosahedron subdivided ``level`` times."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be in 0..{MAX_LEVEL}, got {level}")
    vertices, triangles = icosahedron()
    for _ in range(level):
        vertices, triangles = subdivide(vertices, triangles)
    return vertices


def xyz_to_latlon(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude in ``[-90, 90]`` and longitude in ``[-180, 180)``, degrees, of unit vectors.

    The poles get longitude 0.
    """
    lat = np.degrees(np.arcsin(np.clip(xyz[:, 2], -1.0, 1.0)))
    lon = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    lon[np.abs(lat) == 90.0] = 0.0
    lon[lon >= 180.0] -= 360.0
    return lat, lon


def format_points(lat: np.ndarray, lon: np.ndarray, decimals: int = 6) -> str:
    """The file content (module docstring): the count, then ``lat lon`` per line."""
    pairs = np.round(np.stack([lat, lon], axis=1), decimals) + 0.0  # + 0.0: no "-0.000000"
    fmt = f"%.{decimals}f"
    body = np.char.add(np.char.add(np.char.mod(fmt, pairs[:, 0]), " "),
                       np.char.mod(fmt, pairs[:, 1]))
    return f"{len(lat)}\n" + "\n".join(body.tolist()) + "\n"


def sphere_points_text(level: int = DEFAULT_LEVEL) -> str:
    """The file content of the level-``level`` set."""
    return format_points(*xyz_to_latlon(icosphere(level)))


def write_sphere_points(path: str | os.PathLike, level: int = DEFAULT_LEVEL) -> None:
    """Atomically write the level-``level`` set to ``path``."""
    write_text(path, sphere_points_text(level))


def read_sphere_points(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes (degrees, ``[n]`` each) of a sphere-points file.

    :class:`OsloError` naming the file if it is unreadable or not in the format of the module
    docstring (count line, then exactly that many pairs, latitudes within [-90, 90]).
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise OsloError(f"cannot read sphere-points file '{path}': {error}") from None
    head, _, body = text.partition("\n")
    try:
        count = int(head.strip())
        values = np.array(body.split(), dtype=np.float64)
    except ValueError:
        raise OsloError(f"sphere-points file '{path}' is malformed: expected a count on the first"
                        " line, then one 'latitude longitude' pair per line") from None
    odd_line = re.search(r"^[ \t]*\S+[ \t]*$|^[ \t]*\S+[ \t]+\S+[ \t]+\S", body, re.M)
    if count <= 0 or len(values) != 2 * count or odd_line:
        raise OsloError(f"sphere-points file '{path}' is malformed: the first line says {count} "
                        f"points, the file has {len(values)} numbers (expected one 'latitude "
                        "longitude' pair per line)")
    lat, lon = values[0::2], values[1::2]
    if not (np.all(np.isfinite(values)) and np.all(np.abs(lat) <= 90.0)):
        raise OsloError(f"sphere-points file '{path}' is malformed: latitudes must be finite "
                        "degrees in [-90, 90] (first column)")
    return lat, lon


def load_or_create(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_sphere_points`, creating the file first if it is missing and named
    ``sphere_<count>.txt`` with ``count = 10 * 4**k + 2``.

    If the file cannot be written there, the points are used without saving them (a warning
    says so).
    """
    path = Path(path)
    if not path.exists():
        match = re.fullmatch(r"sphere_(\d+)\.txt", path.name)
        level = level_of_count(int(match.group(1))) if match else None
        if level is None:
            raise OsloError(f"sphere-points file '{path}' does not exist (a missing file named "
                            "sphere_<10*4**k+2>.txt, e.g. sphere_655362.txt, is generated)")
        get_logger().info("generating %s (icosahedron subdivided %d times)", path, level)
        text = sphere_points_text(level)
        try:
            write_text(path, text)
        except OSError as error:
            get_logger().warning("cannot save %s (%s); using the points unsaved", path, error)
            lat, lon = np.array(text.split()[1:], dtype=np.float64).reshape(-1, 2).T
            return lat, lon
    return read_sphere_points(path)
