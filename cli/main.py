import click

@click.group()
def main():
    """disentangle-eval"""

@main.command()
def hello():
    click.echo("hi")
