from medseg.cli import app

if __name__ == "__main__":  # python -m medseg.cli; not when a spawned child process imports it
    app()
