// Output assertions must not depend on whether the test run has a terminal.
process.env.NO_COLOR = '1'
process.env.FORCE_COLOR = '0'
