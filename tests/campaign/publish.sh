#!/usr/bin/env bash
# Data-loss checks: every build/cleanup/rollback variant must leave files outside the run's own
# folders untouched and the live snapshot readable.
B="$EDGESHARD_CLI"; cd "$1"; rm -rf L; mkdir -p L/root L/sibling; echo keep > L/sibling/file; echo keep > L/root/unrelated
$B build --quiet --input recs.jsonl --key-field id --value-field value --shards 4 --out L/root >/dev/null
snap() { (cd L && find . -type f | LC_ALL=C sort) ; }
before=$(snap); fails=0; n=0
check() { n=$((n+1)); local rc=$1; shift; after=$(snap)
  missing=$(LC_ALL=C comm -23 <(echo "$before") <(echo "$after") | grep -v "^./root/manifests/\|^./root/shards/" || true)
  [ "$(cat L/sibling/file)" = keep ] && [ "$(cat L/root/unrelated)" = keep ] || { echo "ALTERED after $*"; fails=$((fails+1)); }
  lost=$(LC_ALL=C comm -23 <(echo "$before") <(echo "$after") | grep "^./root/" | grep -c . || true)
  if [ -n "$missing" ]; then echo "LOSS after $*: $missing"; fails=$((fails+1)); fi
  out=$(printf '0\n3\n' | $B multiget --root L/root 2>&1); echo "$out" | grep -q '"value":"value-3-x"' || { echo "UNREADABLE after $*: $out"; fails=$((fails+1)); }
  [ $rc -ge 101 ] && { echo "CRASH rc=$rc after $*"; fails=$((fails+1)); }
  before=$(snap); }
for rid in .. . / a/../.. /tmp "../sibling" "$(printf 'x%.0s' {1..300})" "é" "" "a b" "run;rm"; do
  $B build --quiet --input recs.jsonl --key-field id --value-field value --shards 4 --run-id "$rid" --out L/root >/dev/null 2>&1; check $? "build --run-id '$rid'"
done
(cd L/root && $B build --quiet --input ../../recs.jsonl --key-field id --value-field value --shards 4 --out '' >/dev/null 2>&1); check $? "build --out ''"
for age in 999999999999999d 0s -1d 1y abc; do $B cleanup --root L/root --older-than "$age" >/dev/null 2>&1; check $? "cleanup --older-than $age"; done
$B cleanup --root L/root --keep-last 0 >/dev/null 2>&1; check $? "cleanup --keep-last 0"
for off in 1 5 99999 -1 0; do $B rollback --root L/root --offset $off >/dev/null 2>&1; check $? "rollback --offset $off"; done
mv L/root/_CURRENT L/root/_CURRENT.bak; mkdir L/root/_CURRENT
$B build --quiet --input recs.jsonl --key-field id --value-field value --shards 4 --out L/root >/dev/null 2>&1; rc=$?
rmdir L/root/_CURRENT; mv L/root/_CURRENT.bak L/root/_CURRENT; before_hist=$($B history --root L/root | wc -l)
check $rc "build with _CURRENT a directory"
echo "$n checks, $fails findings"
[ "$fails" -eq 0 ]
