"""The lab: landscapes and races, comparisons on real data, learning-rate search, reports, the live lab.

The stable entry point for scripts and notebooks::

    from descentlab.lab import race, write_race_outputs
    result = race("ravine", ["sgd", "momentum", "adam"], steps=300)
    result                                    # in a notebook: the picture and the metrics table
    write_race_outputs(result, "runs/ravine")  # race.png, race.gif, metrics.csv, report.html

Import the other pieces from their modules (``descentlab.lab.lr_find``, ``descentlab.lab.compare``, …);
``from descentlab.lab.race import …`` keeps working (the module and the function share the name ``race``: the
package attribute is the function).
"""

from descentlab.lab.race import RaceResult, race
from descentlab.lab.race_outputs import write_race_outputs

__all__ = ["RaceResult", "race", "write_race_outputs"]
