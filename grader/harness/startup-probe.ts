// An empty program: how long `node --import tsx` takes to start and exit on this machine
// right now. Checks with a time limit on a program's very first moments (exit within 3 s
// on bad configuration) add what the machine's load costs on top of an idle start.
process.exitCode = 0;
