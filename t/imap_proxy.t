#!/usr/bin/perl

# The IMAP flows of t/imap.t through a "router_proxy on" server: the module
# handles the session itself instead of auth_http and the stock proxy.

use warnings;
use strict;

use FindBin;

our $ROUTER_PROXY = 1;

do "$FindBin::Bin/imap.t";
die $@ if $@;
