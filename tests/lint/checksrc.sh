#!/usr/bin/env bash
# checksrc.sh [PATH...]: rejects what C in dualroute must not contain. With no arguments it checks
# every .c/.h under this checkout's C directories; a PATH may be a file or a directory to search.
#
#  - calls to sprintf, vsprintf, strcpy, strcat, strtok, atoi, atol and gets (use snprintf,
#    vsnprintf, strtok_r, parse_int64() and friends, fgets);
#  - sqlite3_exec() whose SQL is not a string literal: SQL built at run time goes through
#    sqlite3_prepare_v2() and bound parameters, never through sqlite3_exec();
#  - tab characters (clang-format indents with spaces).
#
# Calls are matched as whole words followed by '(' after comments and the contents of string and
# character literals are blanked, so a comment that names sprintf() is fine. Each finding is
# printed as FILE:LINE: message, followed by the line; the exit status is 1 if there was any.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/lint/sources.sh
. "$here/sources.sh"

files=()
if [ $# -eq 0 ]; then
    set -- "$(cd "$here/../.." && pwd)"
    mapfile -t files < <(list_sources "$1")
else
    for p in "$@"; do
        if [ -d "$p" ]; then
            mapfile -t -O ${#files[@]} files < <(find "$p" \
                \( -name node_modules -o -name .git -o -name 'build*' \) -prune -o \
                -type f \( -name '*.c' -o -name '*.h' \) -print | LC_ALL=C sort)
        elif [ -f "$p" ]; then
            files+=("$p")
        else
            echo "checksrc: $p: no such file or directory" >&2
            exit 2
        fi
    done
fi

if [ ${#files[@]} -eq 0 ]; then
    echo "checksrc: no C files found"
    exit 0
fi

exec perl -e '
use strict;
use warnings;

my @banned = qw(sprintf vsprintf strcpy strcat strtok atoi atol gets);
my $banned = join("|", @banned);
my ($problems, %bad_files) = (0);

sub report {
    my ($file, $lines, $line, $msg) = @_;
    my $text = $lines->[$line - 1] // "";
    $text =~ s/^\s+//;
    print "$file:$line: $msg\n    $text\n";
    $problems++;
    $bad_files{$file} = 1;
}

# Comments become spaces; literals keep their quotes but lose their contents. Newlines stay, so
# offsets still map to the same line numbers.
sub blank {
    my ($s) = @_;
    if ($s =~ m{^/[/*]}) {
        $s =~ s/[^\n]/ /g;
    } else {
        my $q = substr($s, 0, 1);
        my $inner = substr($s, 1, length($s) - 2);
        $inner =~ s/[^\n]/ /g;
        $s = $q . $inner . $q;
    }
    return $s;
}

for my $file (@ARGV) {
    open(my $fh, "<", $file) or die "checksrc: $file: $!\n";
    local $/;
    my $src = <$fh>;
    close($fh);
    my @lines = split(/\n/, $src, -1);

    for my $i (0 .. $#lines) {
        report($file, \@lines, $i + 1, "tab character") if $lines[$i] =~ /\t/;
    }

    (my $code = $src) =~ s{/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\x27(?:\\.|[^\x27\\\n])*\x27}
                          {blank($&)}gse;
    my $lineof = sub { 1 + (substr($code, 0, $_[0]) =~ tr/\n//) };

    while ($code =~ /(?<![\w.>])($banned)\s*\(/g) {
        report($file, \@lines, $lineof->($-[1]), "call to $1()");
    }

    # The second argument must start with a string literal: skip the first argument, which may
    # itself contain calls and commas inside parentheses.
    while ($code =~ /(?<![\w.>])sqlite3_exec\s*\(/g) {
        my ($start, $pos, $depth) = ($-[0], pos($code), 0);
        while ($pos < length($code)) {
            my $c = substr($code, $pos, 1);
            last if $depth == 0 && ($c eq "," || $c eq ")");
            $depth++ if $c eq "(";
            $depth-- if $c eq ")";
            $pos++;
        }
        my $rest = substr($code, $pos, 64);
        if ($rest !~ /^,\s*"/) {
            report($file, \@lines, $lineof->($start),
                   "sqlite3_exec() with SQL that is not a string literal (use a prepared statement)");
        }
        pos($code) = $start + 1;
    }
}

my $n = scalar(@ARGV);
if ($problems) {
    printf("checksrc: %d problem(s) in %d of %d file(s)\n", $problems, scalar(keys %bad_files), $n);
    exit 1;
}
print "checksrc: $n file(s) clean\n";
' "${files[@]}"
