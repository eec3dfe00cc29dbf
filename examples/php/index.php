<?php
// The PHP example FastCGI worker, run by php-cgi (fcgivisor pool command
// ["/usr/bin/php-cgi"], PHP_FCGI_MAX_REQUESTS=0) with SCRIPT_FILENAME pointing
// here. It serves the examples' test protocol (examples/README.md).
//
// php-cgi prints nothing at startup, so unlike the other workers there is no
// "php worker <pid> ready" line.

// PHP appends "; charset=UTF-8" to text/* types unless default_charset is empty.
ini_set('default_charset', '');
header_remove('X-Powered-By');

function text(): void { header('Content-Type: text/plain'); }

function print_sorted(array $pairs): void // [[name, value], ...], ordered by name
{
    usort($pairs, fn($a, $b) => strcmp($a[0], $b[0]));
    foreach ($pairs as [$name, $value]) {
        echo $name, '=', $value, "\n";
    }
}

// The first key decides: "size=5&x" is key "size", value "5".
$first = explode('&', $_SERVER['QUERY_STRING'] ?? '', 2)[0];
[$key, $val] = array_pad(explode('=', $first, 2), 2, '');
$val = urldecode($val);

switch ($key) {
case 'vars':
    // $_SERVER = the FastCGI params plus php-cgi's process environment and
    // PHP's own entries (PHP_SELF, REQUEST_TIME, ...); cgi.fix_pathinfo
    // rewrites SCRIPT_NAME, PATH_INFO and PATH_TRANSLATED.
    text();
    $pairs = [];
    foreach ($_SERVER as $name => $value) {
        if (is_string($value)) {
            $pairs[] = [(string)$name, $value];
        }
    }
    print_sorted($pairs);
    break;
case 'penv':
    $data = file_get_contents('/proc/self/environ');
    text();
    $pairs = [];
    foreach (explode("\0", $data) as $kv) {
        if ($kv !== '') {
            $pairs[] = array_pad(explode('=', $kv, 2), 2, '');
        }
    }
    print_sorted($pairs);
    break;
case 'echo':
    header('Content-Type: application/octet-stream');
    $in = fopen('php://input', 'rb');
    while (!feof($in) && ($buf = fread($in, 65536)) !== false && $buf !== '') {
        echo $buf;
    }
    fclose($in);
    break;
case 'crc32':
    // The whole body is read before the answer starts.
    $ctx = hash_init('crc32b'); // CRC-32 (IEEE), as zlib's crc32()
    $len = 0;
    $in = fopen('php://input', 'rb');
    while (!feof($in) && ($buf = fread($in, 65536)) !== false && $buf !== '') {
        hash_update($ctx, $buf);
        $len += strlen($buf);
    }
    fclose($in);
    text();
    echo $len, ' ', hash_final($ctx), "\n";
    break;
case 'size':
    $n = (int)$val;
    text();
    $chunk = str_repeat('abcdefghijklmnopqrstuvwxyz', 2520); // every chunk starts with 'a'
    $len = strlen($chunk);
    while ($n > 0) {
        $k = min($n, $len);
        echo $k === $len ? $chunk : substr($chunk, 0, $k);
        $n -= $k;
    }
    break;
case 'status':
    $code = (int)$val;
    if ($code < 100 || $code > 999) {
        $code = 500;
    }
    header("Status: $code Custom");
    text();
    echo "status $code\n";
    break;
case 'location':
    header('Status: 302 Found');
    header("Location: $val");
    break;
case 'sleep':
    $ms = (int)$val;
    usleep($ms * 1000);
    text();
    echo "slept $ms\n";
    break;
case 'pid':
    text();
    echo getmypid(), "\n";
    break;
case 'stderr':
    // With no error_log file set, php-cgi's error_log() sends the message
    // (plus "\n") as FastCGI stderr; php://stderr would be the process's fd 2.
    error_log($val);
    text();
    echo "ok\n";
    break;
case 'exit':
    // exit() in php-cgi only ends the script and the request is answered.
    // A crash mid-request is the process going away with status 3: replace
    // it with one that exits 3 (pcntl is built into Debian's php-cgi).
    if (function_exists('pcntl_exec')) {
        pcntl_exec('/bin/sh', ['-c', 'exit 3']);
    }
    posix_kill(getmypid(), 9); // no pcntl: die by SIGKILL instead
    break;
default:
    text();
    echo "hello from php\n";
}
