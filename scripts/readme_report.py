"""Put a generated benchmark report into the README's report section.

    python -m fastlog.bench --quick --markdown docs/REPORT.md
    python scripts/readme_report.py            # docs/REPORT.md -> README.md
    python scripts/readme_report.py --check    # exit 1 if the README differs

The section lies between the two marker lines below; everything between them
is replaced by the report (its title dropped and its headings one level
down: the README has its own), so the README's figures come from a real run.
"""
import os
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- report: generated from docs/REPORT.md by scripts/readme_report.py; do not edit -->"
END = "<!-- end of report -->"


def spliced(readme, report):
    """The README text with the report between the markers."""
    lines = report.strip("\n").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    # The report's sections become subsections of the README's "Report".
    lines = ["#" + ln if ln.startswith("### ") else ln for ln in lines]
    body = "\n".join(lines).strip("\n")
    try:
        head, rest = readme.split(BEGIN + "\n", 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"README.md lacks the report markers:\n{BEGIN}\n{END}") from None
    return f"{head}{BEGIN}\n{body}\n{END}{tail}"


def main(argv):
    readme_path = os.path.join(HERE, "README.md")
    with open(readme_path) as f:
        readme = f.read()
    with open(os.path.join(HERE, "docs", "REPORT.md")) as f:
        new = spliced(readme, f.read())
    if "--check" in argv:
        if new != readme:
            print("README.md's report section differs from docs/REPORT.md: "
                  "run python scripts/readme_report.py")
            return 1
        return 0
    with open(readme_path, "w") as f:
        f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
