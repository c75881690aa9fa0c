"""The command line: the only layer that parses arguments, prints and calls asyncio.run."""
