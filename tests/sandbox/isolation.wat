;; Test guest for tests/test_sandbox.c: the first byte of the request picks a
;; behaviour (see the table in the test). Memory: 2 pages, growable to 1000.
;; TAG is replaced by the test to make distinct modules (distinct hashes).
(module
  (import "realm" "request_read" (func $request_read (param i32 i32) (result i32)))
  (import "realm" "emit" (func $emit (param i32 i32) (result i32)))
  (import "realm" "respond" (func $respond (param i32 i32 i32) (result i32)))
  (import "realm" "last_error" (func $last_error (param i32 i32) (result i32)))
  (import "realm" "model_open" (func $model_open (param i32 i32) (result i32)))
  (import "realm" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2 1000)
  (global $counter (mut i32) (i32.const 0))
  (data (i32.const 16) "TAG")
  (data (i32.const 32) "nope")
  (func $recurse (param i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "handle") (result i32)
    (local $n i32) (local $op i32)
    ;; the request lands at 1024
    (local.set $n (call $request_read (i32.const 1024) (i32.const 4096)))
    (local.set $op (i32.load8_u (i32.const 1024)))
    ;; 'e': echo the request, prefixed by the module's tag
    (if (i32.eq (local.get $op) (i32.const 101)) (then
      (drop (call $emit (i32.const 16) (i32.const 3)))
      (drop (call $respond (i32.const 200) (i32.const 1024) (local.get $n)))
      (return (local.get $n))))
    ;; 'o': load far out of bounds
    (if (i32.eq (local.get $op) (i32.const 111)) (then
      (return (i32.load (i32.const 0xfffffff0)))))
    ;; 's': store just past the end of memory
    (if (i32.eq (local.get $op) (i32.const 115)) (then
      (i32.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 2)) (i32.const 7))
      (return (i32.const 0))))
    ;; 'p': host call with a pointer outside memory
    (if (i32.eq (local.get $op) (i32.const 112)) (then
      (return (call $emit (i32.const 0xffffff00) (i32.const 16)))))
    ;; 'l': host call whose pointer + length overflows 32 bits
    (if (i32.eq (local.get $op) (i32.const 108)) (then
      (return (call $emit (i32.const 16) (i32.const 0xffffffff)))))
    ;; 'u': unreachable
    (if (i32.eq (local.get $op) (i32.const 117)) (then unreachable))
    ;; 'd': divide by zero (the divisor comes from memory: byte 1 of the request)
    (if (i32.eq (local.get $op) (i32.const 100)) (then
      (return (i32.div_s (i32.const 10) (i32.load8_u (i32.const 1025))))))
    ;; 'i': loop forever
    (if (i32.eq (local.get $op) (i32.const 105)) (then
      (loop $l (global.set $counter (i32.add (global.get $counter) (i32.const 1))) (br $l))))
    ;; 'r': unbounded recursion
    (if (i32.eq (local.get $op) (i32.const 114)) (then
      (return (call $recurse (i32.const 0)))))
    ;; 'g': grow past the tenant's cap; on refusal, trap
    (if (i32.eq (local.get $op) (i32.const 103)) (then
      (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))
      (return (memory.size))))
    ;; 'c': count calls (state kept between calls of one instance)
    (if (i32.eq (local.get $op) (i32.const 99)) (then
      (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
      (return (global.get $counter))))
    ;; 'b': a too-small buffer returns the size needed
    (if (i32.eq (local.get $op) (i32.const 98)) (then
      (return (call $request_read (i32.const 8192) (i32.const 1)))))
    ;; 'x': open a model that does not exist, return the error's length
    (if (i32.eq (local.get $op) (i32.const 120)) (then
      (if (i32.ge_s (call $model_open (i32.const 32) (i32.const 4)) (i32.const 0))
        (then (return (i32.const -1))))
      (return (call $last_error (i32.const 8192) (i32.const 512)))))
    ;; 'w': store request bytes 1..4 at 20000 and return them; 'W': read them back
    (if (i32.eq (local.get $op) (i32.const 119)) (then
      (i32.store (i32.const 20000) (i32.load (i32.const 1025)))
      (return (i32.load (i32.const 20000)))))
    (if (i32.eq (local.get $op) (i32.const 87)) (then
      (return (i32.load (i32.const 20000)))))
    ;; 'L': log the rest of the request at level 9
    (if (i32.eq (local.get $op) (i32.const 76)) (then
      (return (call $log (i32.const 9) (i32.const 1025) (i32.sub (local.get $n) (i32.const 1))))))
    (i32.const -2)))
