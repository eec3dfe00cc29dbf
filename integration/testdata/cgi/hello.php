#!/usr/bin/php-cgi
<?php
// A PHP script run as one-shot CGI through its shebang. php-cgi's SAPI name
// is "cgi-fcgi" in both modes; FastCGI mode has FCGI_ROLE among the params.
ini_set('default_charset', '');
header('Content-Type: text/plain');
echo 'fcgi_role=', $_SERVER['FCGI_ROLE'] ?? '', "\n";
echo 'script_name=', $_SERVER['SCRIPT_NAME'] ?? '', "\n";
echo 'q=', $_GET['q'] ?? '', "\n";
