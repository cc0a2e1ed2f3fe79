#!/usr/bin/env python3
"""Writes the man pages of workerbus and of each of its commands from the
tool's own help (`workerbus --help`, `workerbus help CMD`), so that the two
never disagree. Roff is written by hand here: a title, NAME, SYNOPSIS (the
usage lines), DESCRIPTION (the rest of the help, paragraphs kept, indented
blocks as examples), SEE ALSO.

    make-man.py WORKERBUS VERSION OUTDIR
"""
import os
import re
import subprocess
import sys

COMMANDS = ["check", "pki", "broker", "publish", "worker", "queue", "serve", "harness", "demo"]


def help_of(wb, cmd):
    args = [wb, "--help"] if cmd is None else [wb, "help", cmd]
    r = subprocess.run(args, capture_output=True, text=True)
    text = r.stdout + r.stderr
    if r.returncode != 0 or "Usage:" not in text:
        sys.exit(f"make-man: {' '.join(args)} gave no usage (status {r.returncode})")
    return text


def roff_escape(line):
    line = line.replace("\\", "\\e")
    # a line may not start with . or ' (roff requests)
    if line.startswith((".", "'")):
        line = "\\&" + line
    return line.replace("-", "\\-")


def page(wb, version, cmd, summaries):
    text = help_of(wb, cmd).rstrip("\n")
    lines = text.split("\n")
    name = "workerbus" if cmd is None else f"workerbus-{cmd}"
    summary = summaries.get(cmd, "the messaging layer between a CI/CD control plane and its workers")
    out = [
        f'.TH {name.upper()} 1 "" "workerbus {version}" "workerbus manual"',
        ".SH NAME",
        f"{roff_escape(name)} \\- {roff_escape(summary)}",
        ".SH SYNOPSIS",
        ".nf",
    ]
    i = 0
    # the usage block: from "Usage:" to the first blank line
    while i < len(lines) and "Usage:" not in lines[i]:
        i += 1
    while i < len(lines) and lines[i].strip():
        usage = re.sub(r"^\s*(Usage:)?\s*", "", lines[i]).rstrip()
        if not usage.startswith("workerbus"):  # a continuation of the line above
            usage = "    " + usage
        out.append(roff_escape(usage))
        i += 1
    out += [".fi", ".SH DESCRIPTION",
            # the help's own layout (tables of options, indented examples)
            # kept line for line
            ".nf"]
    for line in lines[i:]:
        out.append(roff_escape(line.rstrip()) if line.strip() else "")
    while out and out[-1] == "":
        out.pop()
    out.append(".fi")
    out.append(".SH SEE ALSO")
    others = ["workerbus(1)"] if cmd else [f"workerbus-{c}(1)" for c in COMMANDS]
    out.append(", ".join(f"\\fB{o.split('(')[0]}\\fR({o.split('(')[1]}" for o in others))
    out.append(".PP")
    out.append("The configuration reference, the built-in broker, IoT Core, the queues and "
               "operations: the documents in /usr/share/doc/workerbus, or docs/ in the source.")
    text = "\n".join(out) + "\n"
    text = re.sub(r"\.nf\n\n+", ".nf\n", text)
    return name, text


def main():
    wb, version, outdir = sys.argv[1:4]
    top = help_of(wb, None)
    summaries = {None: "the messaging layer between a CI/CD control plane and its workers"}
    for m in re.finditer(r"^  (\w+)\s{2,}(.+)$", top, re.M):
        summaries[m.group(1)] = m.group(2).strip()
    os.makedirs(outdir, exist_ok=True)
    for cmd in [None] + COMMANDS:
        name, text = page(wb, version, cmd, summaries)
        with open(os.path.join(outdir, name + ".1"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
