<?php
// The endpoint of bench/burst.sh: ?sleep=MS sleeps MS ms, then answers
// "PID STARTTIME\n", STARTTIME being field 22 of /proc/self/stat (when this
// process was created, in clock ticks since boot) so that the load tool can
// tell when each worker was spawned as well as when it first served.
// examples/php/index.php cannot combine ?sleep with ?pid (its first query key
// decides), hence this script.
ini_set('default_charset', '');
header_remove('X-Powered-By');
header('Content-Type: text/plain');

$ms = (int)($_GET['sleep'] ?? 0);
if ($ms > 0) {
    usleep($ms * 1000);
}
$start = 0;
$stat = @file_get_contents('/proc/self/stat');
if ($stat !== false) {
    // The command name (field 2) may hold spaces: split after its ')'.
    $fields = explode(' ', substr($stat, strrpos($stat, ')') + 2));
    $start = $fields[19] ?? 0; // field 22; fields[0] is field 3
}
echo getmypid(), ' ', $start, "\n";
