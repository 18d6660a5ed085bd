"""Load and validate `topology.yaml`, the one description of the CDN every service reads.

`load_topology(path)` reads the YAML file; `parse_topology(data, source=...)` validates an already
parsed mapping. Both return frozen dataclasses (`model`) and raise `TopologyError` naming the key path
and the bad value (`edges[1].region: 'eu-wset' is not a region (known: ...)`). Pure apart from reading
the file. Modules: `model` (values), `reader` (key paths and value parsers), `zones`, `parse`.
"""

from __future__ import annotations

from cdn.topology.model import (
    Capacity,
    ClientNetwork,
    ContentZone,
    DnsSettings,
    Edge,
    HealthSettings,
    Location,
    OriginSettings,
    Record,
    RecordType,
    Soa,
    TlsSettings,
    Topology,
    TopologyError,
    Zone,
    format_size,
    parse_size,
)
from cdn.topology.parse import load_topology, parse_topology

__all__ = [
    "Capacity",
    "ClientNetwork",
    "ContentZone",
    "DnsSettings",
    "Edge",
    "HealthSettings",
    "Location",
    "OriginSettings",
    "Record",
    "RecordType",
    "Soa",
    "TlsSettings",
    "Topology",
    "TopologyError",
    "Zone",
    "format_size",
    "load_topology",
    "parse_size",
    "parse_topology",
]
