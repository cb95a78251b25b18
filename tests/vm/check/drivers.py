#!/usr/bin/env python3
"""drivers: the survey of what vivid and v4l2loopback offer ran, and benchcam probe saw both."""
import sys

import vmcheck

c = vmcheck.Checks(sys.argv[1])
c.scenario_ran()
c.check("vivid-000-vid-cap" in c.text("nodes-vivid.txt"), "vivid's capture node exists")
c.check("Loopback MJPEG" in c.text("nodes-both.txt"), "the v4l2loopback node exists")
c.check("Video Capture" in c.text("v4l2-loopback-fed.txt"), "the fed loopback node is a capture device")
probe = c.text("probe-both.txt")
c.check("cam0" in probe and "cam1" in probe, "benchcam probe lists both cameras")
c.note(f"survey in {c.path()}: v4l2-*.txt (formats, controls), probe-*.txt, vivid-parameters.txt")
c.done()
