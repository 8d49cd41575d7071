"""Developer tools (`make lint`): checks that keep the package's structure honest."""
