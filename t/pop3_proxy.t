#!/usr/bin/perl

# The POP3 flows of t/pop3.t through a "router_proxy on" server: the module
# handles the session itself instead of auth_http and the stock proxy.

use warnings;
use strict;

use FindBin;

our $ROUTER_PROXY = 1;

do "$FindBin::Bin/pop3.t";
die $@ if $@;
