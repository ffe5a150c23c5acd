# Include from a CubeMX-generated CMake project (STM32CubeMX >= 6.11, "CMake" toolchain):
#   set(NGD_ROOT ${CMAKE_SOURCE_DIR}/path/to/firmware)
#   include(${NGD_ROOT}/examples/stm32/ngd_stm32.cmake)
#   target_link_libraries(${CMAKE_PROJECT_NAME} nanogridata)
# NOT exercised in this repository's CI (no STM32Cube here).
add_library(nanogridata STATIC
  ${NGD_ROOT}/src/ngd_frame.c ${NGD_ROOT}/src/ngd_cbor.c ${NGD_ROOT}/src/ngd_client.c
  ${NGD_ROOT}/port/builtin/ngd_sha256.c ${NGD_ROOT}/port/builtin/ngd_hmac_builtin.c
  ${NGD_ROOT}/examples/common/ngd_bsd_transport.c
  ${NGD_ROOT}/examples/stm32/Core/Src/gas_sensor.c
  ${NGD_ROOT}/examples/stm32/Core/Src/ngd_task.c)
target_include_directories(nanogridata PUBLIC ${NGD_ROOT}/include ${NGD_ROOT}/examples/common
  ${NGD_ROOT}/examples/stm32/Core/Inc)
# Same sizing for every file that sees ngd_client_t.
target_compile_definitions(nanogridata PUBLIC NGD_BSD_LWIP NGD_CLIENT_RING_SLOTS=16)
# The HAL, CMSIS-RTOS and LwIP include paths come from the generated project.
target_link_libraries(nanogridata PUBLIC stm32cubemx)
