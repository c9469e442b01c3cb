"""The Jenkins side from the command line: register the jobs, trigger and follow builds."""
