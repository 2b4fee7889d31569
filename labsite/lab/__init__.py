"""The interactive lab: the lab page and its API, stored scenarios, users and groups."""
