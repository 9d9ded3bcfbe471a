"""zip_d2.arguments builds the training tools' parsers without torch; its mirror of detectron2's
default_argument_parser must take exactly detectron2's flags, with its defaults and help."""
import argparse

from detectron2.engine import default_argument_parser as detectron2_parser

from zip_d2.arguments import add_launch_arguments, default_argument_parser

FIELDS = ("option_strings", "dest", "nargs", "const", "default", "type", "choices", "required",
          "help", "metavar")


def _flags(parser):
    return {a.dest: {f: getattr(a, f) for f in FIELDS} | {"kind": type(a).__name__}
            for a in parser._actions}


def test_the_mirror_takes_detectron2s_flags_with_its_defaults_and_help():
    ours, theirs = default_argument_parser(), detectron2_parser()
    assert _flags(ours) == _flags(theirs)
    assert ours.epilog == theirs.epilog and ours.formatter_class is theirs.formatter_class
    assert default_argument_parser(epilog="x").epilog == detectron2_parser(epilog="x").epilog
    argv = ["--config-file", "c.yaml", "--num-gpus", "2", "--eval-only", "A.B", "1", "--resume"]
    assert vars(ours.parse_args(argv)) == vars(theirs.parse_args(argv))


def test_the_launch_flags_alone_are_detectron2s():
    launch = {"num_gpus", "num_machines", "machine_rank", "dist_url"}
    ours = _flags(add_launch_arguments(argparse.ArgumentParser()))
    theirs = _flags(detectron2_parser())
    assert set(ours) == launch | {"help"}
    assert {d: ours[d] for d in launch} == {d: theirs[d] for d in launch}
