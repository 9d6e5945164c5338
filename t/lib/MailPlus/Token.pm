package MailPlus::Token;

# Keys and signed tokens (JWS, RFC 7515/7519) for the token login tests,
# made with the openssl command line only (no Perl crypto module).
#
#   my $k = MailPlus::Token->new($t);       # keys in $t->testdir/token/
#   $k->jwks_file;                          # JWKS: rsa1, ec1, ed1
#   $k->issuer; $k->audience;               # "https://idp.test", "mail"
#   my $jwt = $k->token(user => 'alice@example.com', alg => 'ES256',
#       claims => { exp => time() - 60, aud => undef },  # undef deletes
#       header => { typ => 'at+jwt' }, kid => 'ec1',
#       key => 'rogue',                     # signed by a key not in JWKS
#       tamper => 1,                        # payload changed after signing
#       none => 1);                         # alg "none", no signature
#   $k->oauthbearer($jwt, user => ..., host => ..., port => ...);
#   $k->xoauth2($user, $jwt);               # raw SASL initial responses
#   $k->write_jwks($path, @kids);           # another JWKS (for reloads)
#
# Keys: "rsa1" (RSA 2048, RS256), "ec1" (P-256, ES256), "ed1" (Ed25519,
# EdDSA), and "rogue" (RSA 2048, never in a JWKS written by default).
# alg => 'HS256' signs with HMAC-SHA256 keyed by the public key's PEM (the
# old "key confusion" attack).

use warnings;
use strict;

use File::Path qw/ make_path /;
use POSIX qw//;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 decode_base64 /;

my %ALG_KID = (RS256 => 'rsa1', ES256 => 'ec1', EdDSA => 'ed1',
    HS256 => 'rsa1', none => 'rsa1');

my @JWKS_KIDS = qw/ rsa1 ec1 ed1 /;

sub new {
    my ($class, $t, %opts) = @_;

    my $dir = $t->testdir() . '/token';
    make_path($dir);

    my $self = bless {
        t => $t,
        dir => $dir,
        keys => {},
        issuer => $opts{issuer} || 'https://idp.test',
        audience => $opts{audience} || 'mail',
        json => JSON::PP->new->canonical(1),
        n => 0,
    }, $class;

    $self->_genkey('rsa1', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048');
    $self->_genkey('ec1', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256');
    $self->_genkey('ed1', 'ED25519');
    $self->_genkey('rogue', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048');

    $self->{jwks_file} = "$dir/jwks.json";
    $self->write_jwks($self->{jwks_file}, @JWKS_KIDS);

    return $self;
}

sub jwks_file { $_[0]{jwks_file} }
sub issuer { $_[0]{issuer} }
sub audience { $_[0]{audience} }
sub dir { $_[0]{dir} }

# the private key's PEM file of a kid

sub key_file { $_[0]{keys}{$_[1]}{file} }

###############################################################################

sub _run {
    my ($self, @cmd) = @_;

    my $out = "$self->{dir}/openssl.out";

    my $pid = fork() // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>', $out or POSIX::_exit(127);
        open STDERR, '>>', "$self->{dir}/openssl.err";
        exec('openssl', @cmd) or POSIX::_exit(127);
    }

    waitpid($pid, 0);
    die "openssl @cmd: exit " . ($? >> 8) . "\n" if $?;

    return _slurp($out);
}

sub _slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or die "$file: $!";
    local $/;
    my $data = <$fh>;
    close $fh;
    return $data;
}

sub _spew {
    my ($file, $data) = @_;
    open my $fh, '>:raw', $file or die "$file: $!";
    print $fh $data;
    close $fh or die "$file: $!";
}

sub b64url {
    my ($data) = @_;
    my $s = encode_base64($data, '');
    $s =~ tr{+/}{-_};
    $s =~ s/=+$//;
    return $s;
}

sub unb64url {
    my ($s) = @_;
    $s =~ tr{-_}{+/};
    $s .= '=' x ((4 - length($s) % 4) % 4);
    return decode_base64($s);
}

sub _genkey {
    my ($self, $kid, $type, @opts) = @_;

    my $file = "$self->{dir}/$kid.pem";

    $self->_run('genpkey', '-algorithm', $type, @opts, '-out', $file);
    chmod 0600, $file;

    my $der = $self->_run('pkey', '-in', $file, '-pubout', '-outform', 'DER');
    my $pem = $self->_run('pkey', '-in', $file, '-pubout');

    my %jwk = (kid => $kid, use => 'sig');

    if ($type eq 'RSA') {
        my $text = $self->_run('rsa', '-in', $file, '-noout', '-modulus');
        $text =~ /^Modulus=([0-9A-Fa-f]+)/ or die "no modulus for $kid\n";
        my $n = pack('H*', $1);
        $n =~ s/^\x00+//;
        %jwk = (%jwk, kty => 'RSA', alg => 'RS256', n => b64url($n),
            e => b64url("\x01\x00\x01"));

    } elsif ($type eq 'EC') {
        # SubjectPublicKeyInfo ends with the uncompressed point 04 || x || y
        my $pt = substr($der, -65);
        die "EC point of $kid\n" unless substr($pt, 0, 1) eq "\x04";
        %jwk = (%jwk, kty => 'EC', alg => 'ES256', crv => 'P-256',
            x => b64url(substr($pt, 1, 32)), y => b64url(substr($pt, 33, 32)));

    } else {
        %jwk = (%jwk, kty => 'OKP', alg => 'EdDSA', crv => 'Ed25519',
            x => b64url(substr($der, -32)));
    }

    $self->{keys}{$kid} = { file => $file, type => $type, jwk => \%jwk,
        pem => $pem };
}

###############################################################################

# the JWK (a hash) of a kid, and JWKS files

sub jwk {
    my ($self, $kid) = @_;
    return { %{ $self->{keys}{$kid}{jwk} } };
}

sub jwks {
    my ($self, @kids) = @_;
    @kids = @JWKS_KIDS unless @kids;
    return $self->{json}->encode({ keys => [ map { $self->jwk($_) } @kids ] });
}

sub write_jwks {
    my ($self, $path, @kids) = @_;
    _spew($path, $self->jwks(@kids) . "\n");
    return $path;
}

###############################################################################

sub _sign {
    my ($self, $alg, $kid, $input) = @_;

    my $key = $self->{keys}{$kid} or die "no key $kid\n";
    my $in = "$self->{dir}/sign.in";
    my $out = "$self->{dir}/sign.out";

    _spew($in, $input);

    if ($alg eq 'HS256') {
        my $hex = unpack('H*', $key->{pem});
        return $self->_run('dgst', '-sha256', '-mac', 'HMAC', '-macopt',
            "hexkey:$hex", '-binary', $in);
    }

    if ($alg eq 'EdDSA') {
        $self->_run('pkeyutl', '-sign', '-inkey', $key->{file}, '-rawin',
            '-in', $in, '-out', $out);
        return _slurp($out);
    }

    $self->_run('dgst', '-sha256', '-sign', $key->{file}, '-out', $out, $in);
    my $sig = _slurp($out);

    return $alg eq 'ES256' ? _der_to_raw($sig, 32) : $sig;
}

# an ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) to JOSE's r || s

sub _der_to_raw {
    my ($der, $size) = @_;

    my $p = 0;
    my $byte = sub { return ord(substr($der, $p++, 1)); };
    my $len = sub {
        my $l = $byte->();
        return $l if $l < 0x80;
        my $n = $l & 0x7f;
        $l = 0;
        $l = ($l << 8) | $byte->() for 1 .. $n;
        return $l;
    };

    die "ECDSA signature: not a SEQUENCE\n" unless $byte->() == 0x30;
    $len->();

    my $raw = '';

    for (1 .. 2) {
        die "ECDSA signature: not an INTEGER\n" unless $byte->() == 0x02;
        my $l = $len->();
        my $int = substr($der, $p, $l);
        $p += $l;
        $int =~ s/^\x00+//;
        die "ECDSA signature: integer too long\n" if length($int) > $size;
        $raw .= ("\x00" x ($size - length($int))) . $int;
    }

    return $raw;
}

# token(user => ..., alg => ..., claims => {}, header => {}, kid => ...,
#       key => KID, tamper => 1, none => 1)

sub token {
    my ($self, %o) = @_;

    my $alg = $o{none} ? 'none' : ($o{alg} || 'RS256');
    my $kid = exists $o{kid} ? $o{kid} : $ALG_KID{$alg} || 'rsa1';
    my $signer = $o{key} || $ALG_KID{$alg} || 'rsa1';
    my $user = exists $o{user} ? $o{user} : 'alice@example.com';
    my $now = time();

    my %claims = (
        iss => $self->{issuer},
        aud => $self->{audience},
        sub => $user,
        email => $user,
        iat => $now,
        nbf => $now,
        exp => $now + 600,
    );

    my %header = (alg => $alg, typ => 'JWT');
    $header{kid} = $kid if defined $kid;

    _apply(\%claims, $o{claims});
    _apply(\%header, $o{header});

    my $input = b64url($self->{json}->encode(\%header)) . '.'
        . b64url($self->{json}->encode(\%claims));

    my $sig = $o{none} ? '' : $self->_sign($alg, $signer, $input);

    if ($o{tamper}) {
        # the signature stays, the claims change: a longer life
        $claims{exp} = (defined $claims{exp} ? $claims{exp} : $now) + 86400;
        $input = b64url($self->{json}->encode(\%header)) . '.'
            . b64url($self->{json}->encode(\%claims));
    }

    return $input . '.' . b64url($sig);
}

sub _apply {
    my ($h, $changes) = @_;

    return unless $changes;

    for my $k (keys %$changes) {
        if (defined $changes->{$k}) {
            $h->{$k} = $changes->{$k};
        } else {
            delete $h->{$k};
        }
    }
}

# the parts of a token: (header hash, claims hash, signature bytes)

sub parts {
    my ($self, $token) = @_;
    my ($h, $p, $s) = split /\./, $token, -1;
    return ($self->{json}->decode(unb64url($h)),
        $self->{json}->decode(unb64url($p)), unb64url($s // ''));
}

# the signature part (base64url) of a token: what a log must never show

sub signature {
    my ($self, $token) = @_;
    my @p = split /\./, $token, -1;
    return $p[2] // '';
}

###############################################################################

# RFC 7628 section 3.1: gs2-header, then key=value pairs each ended by
# ^A, then ^A:  "n,a=user," ^A "host=h" ^A "port=p" ^A "auth=Bearer T" ^A ^A

sub oauthbearer {
    my ($self, $token, %o) = @_;

    my $s = 'n,' . (defined $o{user} && length $o{user}
        ? 'a=' . _saslname($o{user}) : '') . ',';

    $s .= "\x01host=$o{host}" if defined $o{host};
    $s .= "\x01port=$o{port}" if defined $o{port};

    return $s . "\x01auth=Bearer $token\x01\x01";
}

# RFC 5801's saslname: "," as =2C and "=" as =3D

sub _saslname {
    my ($s) = @_;
    $s =~ s/=/=3D/g;
    $s =~ s/,/=2C/g;
    return $s;
}

# Google's XOAUTH2: "user=" user ^A "auth=Bearer " token ^A ^A

sub xoauth2 {
    my ($self, $user, $token) = @_;
    return "user=$user\x01auth=Bearer $token\x01\x01";
}

1;
