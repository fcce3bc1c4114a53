# Write a C file defining `const unsigned char NAME[]` and `const size_t NAME_len`
# with the bytes of INPUT (cmake -DINPUT=... -DOUTPUT=... -DNAME=... -P embed.cmake).
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUTPUT}.tmp"
     "#include <stddef.h>\nconst unsigned char ${NAME}[] = {${bytes} 0};\nconst size_t ${NAME}_len = ${len};\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
