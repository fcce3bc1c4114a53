# Build recipe for tenant modules written in C.
#
#   include(guest/RealmGuest.cmake)
#   realm_add_guest(my_handler handler.c [more.c ...])   # -> ${CMAKE_BINARY_DIR}/guest/my_handler.wasm
#
# Compiles freestanding wasm32 (clang --target=wasm32-wasi -nostdlib: the
# sandbox offers no WASI imports) with the guest SDK (guest/include,
# guest/lib/realm_guest.c) and clang's builtins, links with wasm-ld,
# exporting `handle` and the memory. Needs Debian's clang, lld and
# libclang-rt-14-dev-wasm32; without them realm_add_guest does nothing.

find_program(REALM_GUEST_CLANG NAMES clang clang-14)
set(REALM_GUEST_DIR ${CMAKE_CURRENT_LIST_DIR})
if(REALM_GUEST_CLANG)
  execute_process(COMMAND ${REALM_GUEST_CLANG} --target=wasm32-wasi -print-libgcc-file-name
                  OUTPUT_VARIABLE REALM_GUEST_BUILTINS OUTPUT_STRIP_TRAILING_WHITESPACE
                  ERROR_QUIET)
  if(NOT EXISTS "${REALM_GUEST_BUILTINS}")
    set(REALM_GUEST_BUILTINS "")
  endif()
endif()

function(realm_add_guest name)
  if(NOT REALM_GUEST_CLANG)
    message(STATUS "clang not found: guest module ${name} is not built")
    return()
  endif()
  set(out ${CMAKE_BINARY_DIR}/guest/${name}.wasm)
  set(srcs)
  foreach(s ${ARGN})
    get_filename_component(abs ${s} ABSOLUTE)
    list(APPEND srcs ${abs})
  endforeach()
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/guest
    COMMAND ${REALM_GUEST_CLANG} --target=wasm32-wasi -O2 -nostdlib -ffreestanding
            -Wall -Wextra -I${REALM_GUEST_DIR}/include
            -Wl,--no-entry -Wl,--export=handle
            -o ${out} ${srcs} ${REALM_GUEST_DIR}/lib/realm_guest.c ${REALM_GUEST_BUILTINS}
    DEPENDS ${srcs} ${REALM_GUEST_DIR}/lib/realm_guest.c ${REALM_GUEST_DIR}/include/realm_guest.h
    COMMENT "Building guest module ${name}.wasm"
    VERBATIM)
  add_custom_target(guest_${name} ALL DEPENDS ${out})
endfunction()
