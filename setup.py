"""Install cc: the package, its handlers and daemons, the console commands, and the tools
(cctools: cc-bench and cc-demo)."""

import re

from setuptools import find_packages, setup

with open("cc/__init__.py", encoding="utf8") as f:
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

setup(
    name="cc",
    version=VERSION,
    description="Command-and-control message router for fleets of database servers",
    long_description=open("README.md", encoding="utf8").read(),
    long_description_content_type="text/markdown",
    license="ISC",
    python_requires=">=3.11",
    packages=find_packages(include=["cc", "cc.*", "cctools", "cctools.*"]),
    # cc-bench's C sender and sink, built on first use
    package_data={"cctools.bench": ["benchload.c"]},
    install_requires=[
        "pyzmq>=24",
        "tornado>=6.2",
        "skytools>=3.8",
        "psycopg2>=2.9.5",
        "cryptography>=38",
        "asn1crypto>=1.5",
    ],
    extras_require={"test": ["nose2>=0.12", "hypothesis>=6", "prometheus_client>=0.16", "PyYAML>=6"]},
    entry_points={
        "console_scripts": [
            "cc-server = cc.server:main",
            "cc-send = cc.client:main",
            "cc-bench = cctools.bench.cli:main",
            "cc-daemon = cc.daemon.cli:main",
            "cc-demo = cctools.demo:main",
            "cc-task = cc.taskclient:main",
            "cc-keygen = cc.crypto.keygen:main",
        ],
    },
)
